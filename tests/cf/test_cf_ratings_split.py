"""The rating-based protocol (ITIPR's read_data.py) on small hand-made rating tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napo_lab.data.ratings import RatingsProtocol, _sklearn_split, split_ratings


def _table(rows):
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def test_filters_grades_and_numbering():
    """Item 99 has one rating (< item_filter 2) and is dropped first; user 7 then has 2 ratings (< 3)
    and is dropped; user 5 keeps 3 ratings but only 1 real one (< min_real 2) and is dropped with its
    noisy ratings. Users 10, 20 remain as 0, 1; items 1, 2, 3, 4 as 0..3."""
    rows = [(10, 1, 5), (10, 2, 4), (10, 3, 2), (10, 4, 1), (20, 1, 4), (20, 2, 5), (20, 3, 3), (20, 4, 4),
            (7, 1, 5), (7, 2, 5), (7, 99, 5), (5, 1, 5), (5, 3, 1), (5, 4, 2)]
    p = RatingsProtocol(item_filter=2, user_filter=3, min_real=2, val_ratio=0.0, test_ratio=0.5, seed=0)
    s = split_ratings(_table(rows), p)
    assert (s.n_users, s.n_items) == (2, 4)
    # user 10: real {0, 1}, noisy {2, 3}; user 20: real {0, 1, 3}, noisy {2}
    for u, real, noisy in ((0, {0, 1}, {2, 3}), (1, {0, 1, 3}, {2})):
        assert set(s.noisy[u].tolist()) == noisy
        assert set(s.test[u].tolist()) | (set(s.train[u].tolist()) - noisy) == real
        assert not set(s.test[u].tolist()) & set(s.train[u].tolist())
        assert noisy <= set(s.train[u].tolist())
    pairs, is_noisy = s.train_pairs()
    assert len(pairs) == s.counts["train"] and is_noisy.sum() == 3


def test_80_10_10_sizes_follow_sklearn_rounding():
    """n = 20 real items: test = ceil(0.1 * 20) = 2; rest 18: val = ceil(0.1/0.9 * 18) = 2; train 16.
    n = 71: test = ceil(7.1) = 8; rest 63: val = ceil(0.11111111111111112 * 63) = ceil(7.000000000000001)
    = 8, a floating-point quirk scikit-learn 1.9.1 has too (it printed 8, 8, 55); train 55."""
    rows = [(0, i, 5) for i in range(20)] + [(1, i, 4) for i in range(20)]
    s = split_ratings(_table(rows), RatingsProtocol(item_filter=1, user_filter=1, min_real=1))
    assert [len(s.test[0]), len(s.val[0]), len(s.train[0])] == [2, 2, 16]
    big = split_ratings(_table([(0, i, 5) for i in range(71)]), RatingsProtocol(item_filter=1, user_filter=1))
    assert [len(big.test[0]), len(big.val[0]), len(big.train[0])] == [8, 8, 55]
    # one seed for every user (the code's behaviour): users with equal item lists split identically
    assert s.test[0].tolist() == s.test[1].tolist()
    other = split_ratings(_table(rows), RatingsProtocol(item_filter=1, user_filter=1, min_real=1, seed=1))
    assert other.test[0].tolist() != s.test[0].tolist() or other.val[0].tolist() != s.val[0].tolist()


def test_sklearn_split_replica():
    """Reference values printed by scikit-learn 1.9.1: train_test_split(list(range(10)), test_size=0.1,
    random_state=0) -> [[8, 4, 9, 1, 6, 7, 3, 0, 5], [2]] (the replica also matched scikit-learn on
    1,188 random lists of 2-199 items, seeds 0/3/7, test sizes 0.1 and 0.1/0.9)."""
    train, test = _sklearn_split(list(range(10)), 0.1, 0)
    assert test == [2] and train == [8, 4, 9, 1, 6, 7, 3, 0, 5]


def test_clean_drops_noisy_training_items():
    rows = [(0, i, 5 if i < 6 else 1) for i in range(10)] + [(1, i, 4) for i in range(10)]
    s = split_ratings(_table(rows), RatingsProtocol(item_filter=1, user_filter=1, min_real=1, clean=True))
    assert s.counts["train_noisy"] == 0 and not set(range(6, 10)) & set(s.train[0].tolist())
    with pytest.raises(ValueError):
        RatingsProtocol(val_ratio=0.5, test_ratio=0.5)
    assert np.all(np.diff(s.train[1]) > 0)
