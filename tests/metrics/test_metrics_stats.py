"""Paired bootstrap intervals: values worked by hand on cases small enough to enumerate."""

import numpy as np
import pytest

from napo_lab.metrics.stats import mean_interval, paired_bootstrap


def test_two_users_interval_is_the_enumerated_bootstrap_distribution():
    """Differences d = (0, 1). Resampling 2 users with replacement gives the means 0 (p = 1/4),
    0.5 (p = 1/2) and 1 (p = 1/4); the 2.5% and 97.5% quantiles are therefore 0 and 1, and the
    point estimate is (0 + 1) / 2 = 0.5. The interval touches 0, so it is not significant."""
    res = paired_bootstrap(np.array([1.0, 1.0]), np.array([1.0, 0.0]), n_boot=4000, seed=1)
    assert res.diff == pytest.approx(0.5)
    assert (res.low, res.high) == (0.0, 1.0)
    assert not res.significant


def test_constant_difference_has_a_zero_width_interval():
    """Every user gains exactly 0.2 (MRR 0.45 vs 0.25): every resample has mean 0.2."""
    res = paired_bootstrap(np.full(7, 0.45), np.full(7, 0.25), n_boot=500)
    assert res.diff == pytest.approx(0.2)
    assert res.low == pytest.approx(0.2) and res.high == pytest.approx(0.2)
    assert res.significant and res.describe() == "+0.200 [+0.200, +0.200]*"


def test_seeds_are_pooled_per_user_and_a_single_seed_baseline_pairs_with_each():
    """Method hits over 2 seeds x 2 users: [[1, 0], [1, 1]]; zero-shot (one seed): [0, 0].
    Per-user seed means: user 0 (1+1)/2 = 1, user 1 (0+1)/2 = 0.5; mean difference 0.75.
    Resamples: {1,1} -> 1, {1,0.5} -> 0.75 (twice), {0.5,0.5} -> 0.5; interval [0.5, 1]."""
    res = paired_bootstrap(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([0.0, 0.0]), n_boot=4000, seed=3)
    assert res.diff == pytest.approx(0.75)
    assert (res.low, res.high) == (0.5, 1.0)
    assert res.n_seeds == 2 and res.n_users == 2 and res.significant


def test_paired_is_tighter_than_the_spread_of_users():
    """Users differ a lot (0..1) but the method adds 0.1 to each: the paired interval is exactly
    the +0.1 shift, while the interval of either mean alone is wide."""
    rng = np.random.default_rng(0)
    base = rng.random(200)
    res = paired_bootstrap(base + 0.1, base, n_boot=1000)
    alone = mean_interval(base, n_boot=1000)
    assert res.high - res.low < 1e-9
    assert alone.high - alone.low > 0.05


@pytest.mark.parametrize(
    "method, baseline, message",
    [
        (np.ones(3), np.ones(4), "pair them on the same rows"),
        (np.ones((2, 3)), np.ones((3, 3)), "give 1 or as many"),
        (np.array([1.0, np.nan]), np.ones(2), "non-finite"),
        (np.ones((2, 0)), np.ones((2, 0)), "at least one user"),
    ],
)
def test_mismatched_inputs_are_refused(method, baseline, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(method, baseline)
