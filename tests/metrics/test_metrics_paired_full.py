"""Paired comparisons on the full-catalogue metrics (full_ranks column), by hand: per-user Recall@K and
NDCG@K, rows without relevant items left out of both sides, and the report's paired table for two
full-ranking-only methods (no candidates, so no chance level)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napo_lab.metrics.paired import compare, per_user
from napo_lab.report import write_report


def _table(full_ranks: list[list[int]]) -> pd.DataFrame:
    n = len(full_ranks)
    return pd.DataFrame({"user": range(n), "target": [-1] * n, "candidates": [[] for _ in range(n)],
                         "relevant": [list(range(len(r))) for r in full_ranks], "full_ranks": full_ranks})


A = _table([[1, 30], [12], [], [3, 4]])
B = _table([[40, 50], [2], [], [1, 60]])


def test_per_user_full_metrics_by_hand():
    np.testing.assert_allclose(per_user(A, "full/recall@10"), [0.5, 0.0, np.nan, 1.0])
    ideal2 = 1 + 1 / np.log2(3)
    np.testing.assert_allclose(per_user(A, "full/ndcg@5"), [1 / ideal2, 0.0, np.nan, (1 / 2 + 1 / np.log2(5)) / ideal2])
    assert per_user(A.drop(columns="full_ranks"), "full/recall@10") is None


def test_compare_skips_rows_without_relevant_items():
    res = compare([A], [B], "full/recall@10", paired_seeds=True, n_boot=2000)
    # per user: (0.5 - 0) , (0 - 1), (1 - 0.5); the empty row is left out
    assert res.n_users == 3 and res.diff == pytest.approx((0.5 - 1 + 0.5) / 3)
    assert res.low <= res.diff <= res.high


def test_report_pairs_full_ranking_only_methods(tmp_path):
    for method, table in (("bprmf", B), ("bprmf+ts-resample", A)):
        run = tmp_path / method
        run.mkdir()
        (run / "run_info.json").write_text(json.dumps({"method": method, "dataset": "movielens", "seed": 0,
                                                       "status": "ok", "overrides": []}))
        (run / "metrics.json").write_text(json.dumps({"test/full/recall@10": 0.5}))
        table.to_parquet(run / "predictions_test.parquet")
    md = write_report(tmp_path, tmp_path / "out", baseline="bprmf").read_text()
    assert "full/recall@10" in md and "bprmf+ts-resample" in md and "+0.000 [" in md
    assert "Chance level" not in md
    paired = pd.read_csv(tmp_path / "out" / "report_paired.csv")
    assert set(paired["metric"]) == {f"full/{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)}
