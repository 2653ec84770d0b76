"""A user's own interactions CSV (columns user, item, timestamp, title), LLaRA's protocol.

Item ids are assigned 0..n-1 in sorted order of the CSV's item keys; each user's interactions are
ordered by timestamp (ties: file order); users are split 8:1:1 with the configured seed; train holds
every window of the train users, val / test each held-out user's last window (as LLaRA does).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from napo_lab.data.examples import Built, PrepReport, read_utf8, split_users, windows
from napo_lab.data.prepared import DataError

REQUIRED = ("user", "item", "timestamp", "title")


def build(cfg: dict[str, Any], files: dict[str, Path], report: PrepReport) -> Built:
    (path,) = files.values()
    text = read_utf8(path)
    df = pd.read_csv(io.StringIO(text), dtype={"user": str, "item": str, "title": str}, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; the CSV needs a header with {list(REQUIRED)}")
    df["timestamp"] = pd.to_numeric(df["timestamp"], errors="coerce")
    bad = df["timestamp"].isna() | (df["user"].str.strip() == "") | (df["item"].str.strip() == "")
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} rows with an empty user/item or a non-numeric timestamp "
                        f"(first at data row {int(bad.idxmax()) + 1})")
    keys = sorted(df["item"].unique())
    item_id = {k: i for i, k in enumerate(keys)}
    titles_per_item = df.groupby("item", sort=True)["title"].agg(lambda s: list(dict.fromkeys(s)))
    report.warn("custom/items_with_several_titles_first_kept", int((titles_per_item.map(len) > 1).sum()))
    titles = [titles_per_item[k][0] for k in keys]
    df["item_id"] = df["item"].map(item_id)
    df = df.sort_values("timestamp", kind="stable")
    user_keys = sorted(df["user"].unique())
    user_id = {k: i for i, k in enumerate(user_keys)}
    seqs = {user_id[u]: g["item_id"].tolist() for u, g in df.groupby("user", sort=True)}
    parts = split_users(seqs, int(cfg.get("seed", 0)))
    max_h = int(cfg["max_history"])
    splits = {
        "train": windows({u: seqs[u] for u in parts["train"]}, max_h),
        "val": windows({u: seqs[u] for u in parts["val"]}, max_h, last_only=True),
        "test": windows({u: seqs[u] for u in parts["test"]}, max_h, last_only=True),
    }
    report.notes.append(f"custom CSV {path.name}: user ids = sorted user keys, item ids = sorted item keys.")
    return Built(items=pd.DataFrame({"item_id": range(len(keys)), "title": titles}), splits=splits)


def eval_splits(cfg: dict[str, Any]) -> list[str]:
    """The evaluation splits this builder prepares (dataset.val_split / test_split name one)."""
    return ["val", "test"]
