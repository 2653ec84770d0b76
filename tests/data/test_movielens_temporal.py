"""MovieLens-100K with the negative-sampling study's global temporal split (movielens_temporal)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from napo_lab.data.examples import PrepReport
from napo_lab.data.sources import movielens_temporal
from napo_lab.data.sources.movielens_temporal import temporal_split
from tests.conftest import needs_data


def test_global_temporal_split_by_hand():
    """20 interactions, ratio 0.1 -> ceil(2) test, the 2 before them validation, 16 train; ties in time
    keep the file order."""
    ratings = pd.DataFrame({"user": [1] * 10 + [2] * 10, "item": list(range(1, 21)), "rating": 4,
                            "timestamp": [t for t in range(10)] + [t + 0.5 for t in range(10)]})
    ratings.loc[19, "timestamp"] = 9  # ties with user 1's last interaction; comes later in the file
    df = temporal_split(ratings, 0.1)
    assert df["split"].tolist() == [0] * 16 + [1, 1, 2, 2]
    # order: ..., (1, item 9, t 8), (2, item 19, t 8.5), (1, item 10, t 9), (2, item 20, t 9)
    assert df.loc[df["split"] == 2, "item"].tolist() == [10, 20]
    assert df.loc[df["split"] == 1, "item"].tolist() == [9, 19]


def test_rows_follow_the_public_protocol(tmp_path, monkeypatch):
    """Val rows: history = the user's train items; test rows: train + val items (the same history for
    every test item of a user). Time order: u1 1, 2, 3 | u2 4, u1 5 | u1 6, u3 7 (ids are item - 1)."""
    ratings = pd.DataFrame({
        "user": [1, 1, 1, 2, 1, 1, 3],
        "item": [1, 2, 3, 4, 5, 6, 7],
        "rating": [5, 4, 3, 2, 5, 4, 3],
        "timestamp": [1, 2, 3, 4, 5, 6, 7],
    })
    monkeypatch.setattr(movielens_temporal, "read_ratings", lambda path: ratings)
    monkeypatch.setattr(movielens_temporal, "read_items", lambda path, report: [f"m{i}" for i in range(1682)])
    cfg = {"files": {"ratings": "r", "items": "i"}, "max_history": 10, "split_ratio": 0.25, "min_rating": 1}
    built = movielens_temporal.build(cfg, {"r": Path("r"), "i": Path("i")}, PrepReport())
    # 7 interactions: ceil(1.75) = 2 test (items 6, 7), 2 val (4, 5), 3 train (1, 2, 3)
    train, val, test = (built.splits[k] for k in ("train", "val", "test"))
    assert train[["user", "target"]].values.tolist() == [[0, 1], [0, 2]]  # item ids - 1, positions t >= 1
    assert val.values.tolist() == [[0, [0, 1, 2], 4], [1, [], 3]]  # user 1 (id 1) has no earlier item:
    assert test.values.tolist() == [[0, [0, 1, 2, 4], 5], [2, [], 6]]  # clean_split drops empty histories


@needs_data
def test_real_movielens_temporal_counts(tmp_path):
    import os

    from napo_lab.config.compose import group
    from napo_lab.data.prepared import PreparedDataset
    from napo_lab.prepare import ensure_prepared

    ds = PreparedDataset.load(ensure_prepared(group("dataset", "movielens_temporal"), os.environ["NAPO_LAB_DATA_DIR"],
                                              tmp_path))
    assert ds.manifest["splits"] == {"train": 89133, "val": 922, "test": 2170}
    assert ds.manifest["temporal_split"]["interactions"] == {"train": 90000, "val": 5000, "test": 5000}
    test = ds.split("test")
    assert test["history"].map(len).min() >= 1


@pytest.mark.parametrize("ratio", [0.05, 0.2])
def test_split_sizes(ratio):
    ratings = pd.DataFrame({"user": range(101), "item": range(101), "rating": 3, "timestamp": range(101)})
    df = temporal_split(ratings, ratio)
    cut = -(-101 * ratio // 1)
    assert (df["split"] == 2).sum() == cut and (df["split"] == 1).sum() == cut
