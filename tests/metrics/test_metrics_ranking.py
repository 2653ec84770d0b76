"""Ranking metrics against hand-worked matrices."""

import math

import numpy as np
import pytest

from napo_lab.metrics.ranking import prefix_keys, ranking_metrics, ranks, topk_items

SCORES = np.array(
    [
        [3.0, 1.0, 2.0, 0.0],  # target 0: rank 1
        [3.0, 1.0, 2.0, 0.0],  # target 2: rank 2
        [1.0, 1.0, 1.0, 1.0],  # target 1: all tie -> worst rank 4
        [0.0, 5.0, 5.0, 1.0],  # target 1: ties with one other -> rank 2
    ]
)
TARGETS = np.array([0, 2, 1, 1])


def test_ranks_pessimistic_ties():
    assert ranks(SCORES, TARGETS).tolist() == [1, 2, 4, 2]


def test_ranking_metrics_hand_worked():
    m = ranking_metrics(SCORES, TARGETS, ks=(1, 2, 5, 10))
    assert m["hr@1"] == pytest.approx(0.25)
    assert m["hr@2"] == pytest.approx(0.75)
    assert m["hr@5"] == pytest.approx(1.0)  # K > C behaves as K = C
    assert m["hr@10"] == pytest.approx(1.0)
    assert m["ndcg@1"] == pytest.approx(0.25)
    assert m["ndcg@2"] == pytest.approx((1 + 2 / math.log2(3)) / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 2 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert m["ndcg@10"] == pytest.approx(m["ndcg@5"])
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.5) / 4)
    assert m["n"] == 4


def test_default_keys():
    m = ranking_metrics(SCORES, TARGETS)
    assert {"hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr"} <= set(m)


def test_constant_scores_never_hit():
    m = ranking_metrics(np.zeros((3, 20)), np.array([0, 5, 19]), ks=(1, 5, 10))
    assert m["hr@1"] == 0.0 and m["hr@10"] == 0.0
    assert m["mrr"] == pytest.approx(1 / 20)


def test_all_miss_and_all_hit():
    scores = np.array([[0.0, 1.0, 2.0], [5.0, 6.0, 7.0]])
    miss = ranking_metrics(scores, np.array([0, 0]), ks=(1, 2))
    assert miss["hr@1"] == 0.0 and miss["hr@2"] == 0.0 and miss["ndcg@2"] == 0.0
    assert miss["mrr"] == pytest.approx(1 / 3)
    hit = ranking_metrics(scores, np.array([2, 2]), ks=(1, 2, 50))
    assert hit["hr@1"] == hit["ndcg@1"] == hit["ndcg@2"] == hit["hr@50"] == hit["mrr"] == 1.0


def test_neg_inf_is_ranked_and_nan_raises():
    assert ranks(np.array([[-np.inf, 0.0]]), np.array([0])).tolist() == [2]
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(np.array([[0.0, np.nan]]), np.array([0]))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        ranks(np.zeros(4), np.array([0]))
    with pytest.raises(ValueError):
        ranks(np.zeros((2, 4)), np.array([0, 4]))
    with pytest.raises(ValueError):
        ranking_metrics(np.zeros((2, 4)), np.array([0, 1]), ks=(0,))


def test_empty_rows():
    m = ranking_metrics(np.zeros((0, 20)), np.zeros(0, dtype=int))
    assert m["hr@1"] == 0.0 and m["n"] == 0


def test_topk_items():
    scores = np.array([[1.0, 3.0, 2.0], [1.0, 1.0, 1.0]])
    ids = np.array([[10, 11, 12], [20, 21, 22]])
    assert topk_items(scores, ids, 2).tolist() == [[11, 12], [20, 21]]
    # target placed after its ties, agreeing with ranks() == 1
    assert topk_items(scores, ids, 2, target_index=np.array([0, 0])).tolist() == [[11, 12], [21, 22]]
    assert topk_items(scores, ids, 5).shape == (2, 3)
    with pytest.raises(ValueError):
        topk_items(np.array([[np.nan, 1.0]]), np.array([[1, 2]]), 1)


def test_topk_consistent_with_ranks():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(200, 6)).astype(float)  # many ties
    targets = rng.integers(0, 6, size=200)
    ids = np.tile(np.arange(6), (200, 1))
    top1 = topk_items(scores, ids, 1, target_index=targets)[:, 0]
    assert np.array_equal(top1 == targets, ranks(scores, targets) == 1)


def test_prefix_keys():
    d = prefix_keys({"hr@1": np.float32(0.5), "n": np.int64(3)}, "test/rank/")
    assert d == {"test/rank/hr@1": 0.5, "test/rank/n": 3}
    assert type(d["test/rank/hr@1"]) is float and type(d["test/rank/n"]) is int
    assert prefix_keys({"a": 1}, "") == {"a": 1}
