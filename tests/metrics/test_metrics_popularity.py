"""Popularity metrics (RecBole definitions) and HR@1 per band, hand-worked."""

import numpy as np
import pytest

from napo_lab.metrics.popularity import gini_index, hr_by_band, popularity_metrics, tail_items

COUNTS = np.array([10, 0, 5, 1, 7, 2])  # tail (ratio 0.5, 3 items): ids 1, 3, 5
REC = np.array([[0, 1], [0, 2], [4, -1], [-1, -1]])


def test_tail_items_rule():
    assert np.flatnonzero(tail_items(COUNTS, 0.5)).tolist() == [1, 3, 5]
    assert np.flatnonzero(tail_items(COUNTS, 0.01)).tolist() == [1]  # at least one item
    assert np.flatnonzero(tail_items(COUNTS, 2)).tolist() == [1, 3, 5]  # > 1: count threshold
    assert np.flatnonzero(tail_items(np.array([3, 1, 1, 5]), 0.25)).tolist() == [1]  # ties by id
    with pytest.raises(ValueError):
        tail_items(COUNTS, 0)


def test_popularity_top2_hand_worked():
    m = popularity_metrics(REC, COUNTS, tail_ratio=0.5, k=2)
    assert m["avg_pop@2"] == pytest.approx((5 + 7.5 + 7) / 3)
    assert m["tail_pct@2"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert m["coverage@2"] == pytest.approx(4 / 6)
    # rec counts sorted [0,0,1,1,1,2]: sum (2i-7) P_i = -1+1+3+10 = 13; / (6 * 5)
    assert m["gini@2"] == pytest.approx(13 / 30)
    assert m["n_rec@2"] == 3


def test_popularity_top1_hand_worked():
    m = popularity_metrics(REC, COUNTS, tail_ratio=0.5, k=1)
    assert m["avg_pop@1"] == pytest.approx(9.0)
    assert m["tail_pct@1"] == 0.0
    assert m["coverage@1"] == pytest.approx(2 / 6)
    assert m["gini@1"] == pytest.approx(13 / 18)
    assert popularity_metrics(REC[:, 0], COUNTS, 0.5, 1) == m  # 1-D input is one column


def test_popularity_k_beyond_width_and_all_invalid():
    assert popularity_metrics(REC, COUNTS, 0.5, k=10)["coverage@10"] == pytest.approx(4 / 6)
    m = popularity_metrics(np.full((3, 1), -1), COUNTS, 0.5, 1)
    assert "avg_pop@1" not in m and "tail_pct@1" not in m
    assert m["coverage@1"] == 0.0 and m["gini@1"] == 0.0 and m["n_rec@1"] == 0
    with pytest.raises(ValueError):
        popularity_metrics(np.array([[6]]), COUNTS, 0.5, 1)


def test_gini_extremes():
    assert gini_index(np.ones(5)) == pytest.approx(0.0)
    assert gini_index(np.array([0, 0, 0, 9])) == pytest.approx(3 / 4)
    assert gini_index(np.zeros(4)) == 0.0


def test_hr_by_band():
    band = np.array(["head", "tail", "mid", "tail", "head", "tail"])
    m = hr_by_band(np.array([True, False, True, False]), np.array([0, 4, 2, 1]), band)
    assert m == {"head/n": 2, "head/hr@1": 0.5, "mid/n": 1, "mid/hr@1": 1.0, "tail/n": 1, "tail/hr@1": 0.0}
    m = hr_by_band(np.array([True]), np.array([0]), band)
    assert m["mid/n"] == 0 and "mid/hr@1" not in m and m["head/hr@1"] == 1.0
    assert all(v == v for v in m.values())  # no NaN
