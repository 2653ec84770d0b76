"""Full-catalogue Recall/NDCG@K with multi-item relevant sets, exclusion and pessimistic ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napo_lab.metrics.full_ranking import full_ranking_metrics, relevant_ranks


def test_ranks_exclusion_and_ties():
    """Row 0 scores items 0..5 as [5, 4, 3, 2, 1, 0]; item 0 excluded, so item 2 ranks 2nd.
    Row 1 gives every item 1.0: a relevant item ties with all 5 others -> rank 6 (pessimistic)."""
    scores = np.array([[5.0, 4, 3, 2, 1, 0], [1.0] * 6])
    ranks = relevant_ranks(scores, [[2, 5], [3]], exclude=[[0, 2], []])
    assert ranks[0].tolist() == [2, 5]  # the relevant item 2 is never excluded; item 0 is
    assert ranks[1].tolist() == [6]


def test_metrics_by_hand():
    """Row 0: relevant {2, 5} at ranks 2 and 5 -> Recall@2 = 1/2, NDCG@2 = (1/log2 3) / (1 + 1/log2 3);
    Recall@5 = 1, NDCG@5 = (1/log2 3 + 1/log2 6) / (1 + 1/log2 3).
    Row 1: target at rank 1 -> 1 everywhere. Row 2: no relevant item -> skipped (n = 2)."""
    scores = np.array([[5.0, 4, 3, 2, 1, 0], [0, 0, 0, 9, 0, 0], [1, 2, 3, 4, 5, 6]])
    out = full_ranking_metrics(scores, [[2, 5], [3], []], exclude=[[0], [], []], ks=(2, 5))
    ideal2 = 1 + 1 / math.log2(3)
    assert out["n"] == 2
    assert out["recall@2"] == pytest.approx((0.5 + 1) / 2)
    assert out["ndcg@2"] == pytest.approx(((1 / math.log2(3)) / ideal2 + 1) / 2)
    assert out["recall@5"] == pytest.approx(1.0)
    assert out["ndcg@5"] == pytest.approx(((1 / math.log2(3) + 1 / math.log2(6)) / ideal2 + 1) / 2)


def test_single_target_rows_and_padded_exclusion():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    out = full_ranking_metrics(scores, np.array([2, 0]), exclude=np.array([[1, -1], [-1, -1]]), ks=(1,))
    assert out["recall@1"] == 1.0 and out["ndcg@1"] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        full_ranking_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
