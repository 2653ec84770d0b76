"""Metrics recomputed from a predictions table agree with the direct functions."""

import numpy as np
import pandas as pd
import pytest

from napo_lab.metrics.table import metrics_from_predictions

TITLES = ["Blur", "Oasis", "Pulp", "Suede", "Elastica"]
COUNTS = np.array([50, 20, 10, 5, 1])
BAND = np.array(["head", "head", "mid", "tail", "tail"])


def _table(with_scores=True):
    return pd.DataFrame(
        {
            "user": [0, 1, 2],
            "target": [0, 3, 2],
            "candidates": [[0, 1, 2], [3, 4, 0], [1, 2, 4]],
            "scores": [[-1.0, -2.0, -3.0], [-5.0, -1.0, -1.0], [-2.0, -2.0, -9.0]] if with_scores else [[]] * 3,
            "generated": ["Blur", "suede", "Pulp and Oasis"],
            "matched": [0, -1, -1],
        }
    )


def test_generation_and_ranking_from_table():
    m = metrics_from_predictions(_table(), TITLES, COUNTS, BAND, tail_ratio=0.4, ks=(1, 2), pop_ks=(1,))
    assert m["hr@1"] == pytest.approx(1 / 3) and m["valid_ratio"] == pytest.approx(1 / 3)
    assert m["hr@1_valid"] == pytest.approx(1.0) and m["n_valid_llara"] == 2
    assert m["pop/avg_pop@1"] == pytest.approx(50.0) and m["pop/n_rec@1"] == 1
    assert m["band/head/hr@1"] == 1.0 and m["band/tail/hr@1"] == 0.0 and m["band/mid/hr@1"] == 0.0
    # ranks: row0 1, row1 3 (ties with item 0's -1.0 ... pessimistic), row2 2
    assert m["rank/hr@1"] == pytest.approx(1 / 3) and m["rank/hr@2"] == pytest.approx(2 / 3)
    assert m["rank/mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    # top-1 items with target-last ties: 0, 4 (tie 4/0 keeps order, target 3 is -5), 1
    assert m["rank/pop/avg_pop@1"] == pytest.approx((50 + 1 + 20) / 3)
    assert m["rank/band/head/n"] == 1 and "rank_norm/hr@1" not in m


def test_generation_only_table_has_no_rank_keys():
    m = metrics_from_predictions(_table(with_scores=False), TITLES)
    assert "hr@1" in m and not any(k.startswith("rank") for k in m)
    assert not any(k.startswith(("pop/", "band/")) for k in m)


def test_target_missing_from_candidates_raises():
    t = _table()
    t.loc[0, "target"] = 4
    with pytest.raises(ValueError):
        metrics_from_predictions(t, TITLES)


def test_parquet_round_trip_and_empty(tmp_path):
    t = _table()
    t["scores_norm"] = t["scores"]
    t.to_parquet(tmp_path / "p.parquet", index=False)
    back = pd.read_parquet(tmp_path / "p.parquet")
    m = metrics_from_predictions(back, TITLES, COUNTS, BAND, tail_ratio=0.4, ks=(1, 2), pop_ks=(1,))
    assert m == metrics_from_predictions(t, TITLES, COUNTS, BAND, tail_ratio=0.4, ks=(1, 2), pop_ks=(1,))
    assert m["rank_norm/hr@1"] == m["rank/hr@1"]
    empty = metrics_from_predictions(t.iloc[:0], TITLES, COUNTS, BAND, generation=True)
    assert empty["n"] == 0 and empty["hr@1"] == 0.0 and "rank/hr@1" not in empty
