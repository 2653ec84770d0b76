"""MovieLens-100K with the negative-sampling study's *global temporal* split (apple/ml-negative-sampling
``data/DataProcessing.py`` and ``util_eval.py``), from the raw ratings with timestamps.

Protocol, as the public code has it:
* every rating with ``rating >= min_rating`` is an implicit interaction (``min_rating: 1`` keeps all ratings, 1-5, as
  the public code does; napo_lab's LLaRA-protocol ``movielens`` keeps >= 3);
* all interactions are sorted by time (ties: ``u.data`` row order, a stable sort; the public code's
  default sort leaves ties unspecified); the last ``ceil(ratio * N)`` are test, the ``ceil(ratio * N)``
  before them validation, the rest train (``test_valid_split_ratio = 0.05``);
* train rows: every position of each user's train-period sequence (history = the <= max_history items
  before it);
* val rows: each validation-period interaction of a user, history = the user's train-period items
  (``evaluate_valid``);
* test rows: each test-period interaction of a user, history = the user's train- *and* validation-period
  items (``evaluate_cohorts``); all test items of a user share that history (later test items are not
  fed back), and a user without earlier items has no test rows.

Candidates (20, seeded) are still attached so the sampled metrics work; the study reads the
full-catalogue metrics. Item ids are ``u.item`` id - 1 (0..1681), titles as in ``movielens``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from napo_lab.data.examples import Built, PrepReport, windows
from napo_lab.data.sources.movielens import N_ITEMS, read_items, read_ratings


def temporal_split(ratings: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """``ratings`` (user, item, timestamp, ...) with a ``split`` column: 0 train, 1 val, 2 test, in time
    order (stable), plus ``order`` (the global time rank)."""
    df = ratings.reset_index(drop=True).copy()
    df["row"] = range(len(df))
    df = df.sort_values(["timestamp", "row"], kind="stable").reset_index(drop=True)
    n = len(df)
    cut = int(math.ceil(n * float(ratio)))
    split = [0] * n
    for i in range(max(n - cut, 0), n):
        split[i] = 2
    for i in range(max(n - 2 * cut, 0), max(n - cut, 0)):
        split[i] = 1
    df["split"] = split
    df["order"] = range(n)
    return df


def build(cfg: dict[str, Any], files: dict[str, Path], report: PrepReport) -> Built:
    f = cfg["files"]
    titles = read_items(files[f["items"]], report)
    ratings = read_ratings(files[f["ratings"]])
    kept = ratings[ratings["rating"] >= int(cfg.get("min_rating") or 0)]
    report.warn("movielens_temporal/ratings_below_min_rating_dropped", len(ratings) - len(kept))
    df = temporal_split(kept, float(cfg.get("split_ratio", 0.05)))
    df["item"] = df["item"] - 1
    max_history = int(cfg["max_history"])
    seqs: dict[int, dict[int, list[int]]] = {}
    for user, item, split in zip(df["user"], df["item"], df["split"]):  # time order within every user
        seqs.setdefault(int(user) - 1, {0: [], 1: [], 2: []})[int(split)].append(int(item))
    train = windows({u: s[0] for u, s in seqs.items()}, max_history)
    val_rows, test_rows = [], []
    for u, s in seqs.items():
        for item in s[1]:
            val_rows.append((u, s[0][-max_history:], item))
        before = s[0] + s[1]
        for item in s[2]:
            test_rows.append((u, before[-max_history:], item))
    cols = ["user", "history", "target"]
    val, test = pd.DataFrame(val_rows, columns=cols), pd.DataFrame(test_rows, columns=cols)
    boundary = {name: int(df.loc[df["split"] == k, "timestamp"].min()) for k, name in ((1, "val"), (2, "test"))
                if (df["split"] == k).any()}
    report.extra["temporal_split"] = {
        "ratio": float(cfg.get("split_ratio", 0.05)),
        "interactions": {"train": int((df["split"] == 0).sum()), "val": int((df["split"] == 1).sum()),
                         "test": int((df["split"] == 2).sum())},
        "first_timestamp": boundary,
    }
    report.notes.append(
        "MovieLens-100K with the negative-sampling study's global temporal split: interactions sorted by "
        "time (stable), the last 5% test, the 5% before validation, the rest train; val/test rows are "
        "every held-out interaction with the user's earlier items as history (test: train + val items)."
    )
    items = pd.DataFrame({"item_id": range(N_ITEMS), "title": titles})
    return Built(items=items, splits={"train": train, "val": val, "test": test})
