"""From values to training: the importance distribution, resampling frequencies and loss weights."""

from __future__ import annotations

import numpy as np
import pytest

from napo_lab.shapley import importance, loss_weights, resample


def test_importance_by_hand():
    """values (-1, 0, 1, 3), clip_quantile 1 (no upper clip): clipped (0, 0, 1, 3), mean 1;
    floor 0.5 adds 0.5: (0.5, 0.5, 1.5, 3.5) / 6."""
    q = importance(np.array([-1.0, 0.0, 1.0, 3.0]), clip_quantile=1.0, floor=0.5)
    assert np.allclose(q, np.array([0.5, 0.5, 1.5, 3.5]) / 6)
    w = loss_weights(np.array([-1.0, 0.0, 1.0, 3.0]), "clipped", clip_quantile=1.0, floor=0.5)
    assert np.allclose(w, np.array([0.5, 0.5, 1.5, 3.5]) / 1.5) and w.mean() == pytest.approx(1.0)
    assert np.array_equal(loss_weights(np.array([-1.0, 2.0]), "raw"), [-1.0, 2.0])


def test_upper_clip_and_uniform_fallback():
    values = np.r_[np.ones(99), 1000.0]
    q = importance(values, clip_quantile=0.99, floor=0.0)
    assert q.max() / q.min() < 12  # the outlier is clipped to the 99% quantile (about 11)
    assert np.allclose(importance(np.array([-2.0, 0.0, -1.0])), 1 / 3)


def test_resampling_frequencies_match_the_distribution():
    """200,000 draws from q: every empirical frequency is within 4 binomial standard errors of q,
    and zero-floor entries with value <= 0 are never drawn."""
    values = np.array([-0.5, 0.0, 0.2, 0.4, 0.1, 0.3])
    q = importance(values, clip_quantile=1.0, floor=0.0)
    draws = resample(q, 200_000, np.random.default_rng(0))
    freq = np.bincount(draws, minlength=len(q)) / len(draws)
    se = np.sqrt(q * (1 - q) / len(draws))
    assert (np.abs(freq - q) <= 4 * se + 1e-12).all()
    assert freq[0] == 0 and freq[1] == 0
    assert np.allclose(q[2:] / q[2:].sum(), values[2:] / values[2:].sum())


def test_resampling_and_weighting_target_the_same_expectation():
    """E_q[f] = E_uniform[w f] with w = q / mean(q): the two uses of the values are unbiased for one
    objective."""
    rng = np.random.default_rng(1)
    values, f = rng.normal(size=50), rng.normal(size=50)
    q = importance(values)
    w = loss_weights(values)
    assert (q * f).sum() == pytest.approx((w * f).mean())
