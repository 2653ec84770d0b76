"""Interaction-volume cohorts, balance and full-catalogue HR@10 / NDCG@10 (napo_lab.metrics.volume)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from napo_lab.data.popularity import popularity_bands
from napo_lab.metrics.volume import (
    balance,
    cohort_sizes,
    full_catalogue_metrics,
    full_catalogue_ranks,
    gini,
    volume_cohorts,
)


def test_cohort_cut_on_a_hand_made_count_table():
    """Frequencies of items 0..7: total 20, thirds at 6.67 and 13.33. By frequency (ties: id):
    item 3 (5) running 5 -> head; item 0 (4) 9 -> mid; item 1 (3) 12 -> mid; item 6 (3) 15 -> tail;
    items 2, 5 (2), 7 (1), 4 (0) -> tail. The item that crosses a third already belongs to the next cohort."""
    freq = np.array([4, 3, 2, 5, 0, 2, 3, 1])
    cohorts = volume_cohorts(freq)
    assert cohorts.tolist() == ["mid", "mid", "tail", "head", "tail", "tail", "tail", "tail"]
    sizes = cohort_sizes(cohorts, freq)
    assert (sizes["head/items"], sizes["mid/items"], sizes["tail/items"]) == (1, 2, 5)
    assert sizes["head/interaction_share"] == pytest.approx(5 / 20)
    assert sizes["tail/interaction_share"] == pytest.approx(8 / 20)


def test_a_dominant_item_leaves_the_head_empty():
    """The public rule adds the item before comparing: an item holding > 1/3 alone is mid."""
    assert volume_cohorts(np.array([10, 5, 3, 1, 1])).tolist() == ["mid", "tail", "tail", "tail", "tail"]


def test_volume_cohorts_differ_from_item_share_bands():
    """Same counts, two notions: 20 % of items vs thirds of interactions."""
    freq = np.array([50, 20, 10, 5, 5, 4, 3, 2, 1, 0])
    assert volume_cohorts(freq).tolist().count("head") == 0  # item 0 holds 50 % alone
    assert popularity_bands(freq).tolist().count("head") == 2


def test_gini_and_balance_by_hand():
    """[0.3, 0.2, 0.1]: sorted 0.1, 0.2, 0.3; sum((2i - 4) x) = -0.2 + 0 + 0.6 = 0.4; / (3 * 0.6) = 2/9."""
    assert gini([0.3, 0.2, 0.1]) == pytest.approx(2 / 9, abs=1e-6)
    assert balance([0.3, 0.2, 0.1]) == pytest.approx(7 / 9, abs=1e-6)
    assert balance([0.2, 0.2, 0.2]) == pytest.approx(1.0)
    assert balance([0.5, 0.0, 0.0]) == pytest.approx(1 / 3, abs=1e-6)  # all accuracy on one cohort
    assert balance([0.0, 0.0, 0.0]) == pytest.approx(1.0)  # the 1e-7 offset: equal zeros are balanced


def test_balance_reproduces_the_published_results_rows():
    """Rows of apple/ml-negative-sampling data/all_results.csv: its balance is over the NDCG values."""
    rows = pd.DataFrame(
        [[0.007950043197954513, 0.004054630866487491, 0.004133396727726591, 0.8390827929439101],
         [0.030821678232419998, 0.0, 0.0, 0.3333398222095012]],
        columns=["head_ndcg", "mid_ndcg", "tail_ndcg", "balance"])
    for r in rows.itertuples():
        assert balance([r.head_ndcg, r.mid_ndcg, r.tail_ndcg]) == pytest.approx(r.balance, abs=1e-12)


def test_full_catalogue_ranks_and_metrics_by_hand():
    """Four users over 12 items; scores = -|item - c_u| + tiny id term, so ranks are easy to read.
    Ranks: user 0 target at the top (1); user 1 rank 3; user 2 rank 11 (outside the top 10);
    user 3: two items tie with the target -> pessimistic rank 3 (1 + 0 higher + 2 tied others)."""
    scores = torch.tensor([
        [float(-abs(i - 0)) for i in range(12)],
        [float(-i) for i in range(12)],
        [float(-i) for i in range(12)],
        [5.0, 5.0, 5.0] + [0.0] * 9,
    ])
    targets = np.array([0, 2, 10, 1])
    ranks = full_catalogue_ranks(lambda h: scores[h[:, 0]], np.arange(4)[:, None], targets)
    assert ranks.tolist() == [1, 3, 11, 3]
    cohorts = np.array(["head", "mid", "tail", "head"] + ["tail"] * 8)
    m = full_catalogue_metrics(ranks, targets, cohorts, k=10)
    assert m["hr@10"] == pytest.approx(3 / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 0 + 1 / math.log2(4)) / 4)
    # target cohorts: 0 -> head, 2 -> tail, 10 -> tail, 1 -> mid; the public code divides by n + 0.01
    assert m["volume/head/hr@10"] == pytest.approx(1 / 1.01)
    assert m["volume/mid/hr@10"] == pytest.approx(1 / 1.01)
    assert m["volume/tail/hr@10"] == pytest.approx(1 / 2.01)
    assert m["volume/tail/ndcg@10"] == pytest.approx(0.5 / 2.01)
    assert m["volume/balance_hr@10"] == pytest.approx(balance([1 / 1.01, 1 / 1.01, 1 / 2.01]))
    assert m["volume/balance_ndcg@10"] == pytest.approx(balance([1 / 1.01, 0.5 / 1.01, 0.5 / 2.01]))
    assert (m["volume/head/n"], m["volume/mid/n"], m["volume/tail/n"]) == (1, 1, 2)


def test_full_catalogue_ranks_can_exclude_history():
    scores = torch.tensor([[9.0, 8.0, 7.0, 1.0]])
    hist = np.array([[0, 1, -1]])
    assert full_catalogue_ranks(lambda h: scores, hist, np.array([2])).tolist() == [3]
    assert full_catalogue_ranks(lambda h: scores, hist, np.array([2]), exclude_history=True).tolist() == [1]
