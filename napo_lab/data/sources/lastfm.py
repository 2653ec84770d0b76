"""LastFM (HetRec 2011) in the LLaRA / S-DPO / NAPO processed form.

Inputs are the published pandas pickles (loaded only after their checksum is verified):
``sdpo_napo/{train,Val,Test}_data.df`` hold one row per interaction of each user (S-DPO's all-window
val/test), ``llara/{Val,Test}_data.df`` only each held-out user's last window (LLaRA's 122 rows).

The pickles have no user column. Users are recovered from the row structure: each user's rows are
contiguous and start with a row whose history is empty (``len_seq`` = 1 and ``seq`` all padding).
User ids are assigned in file order: train users first, then val, then test. LLaRA's rows are
matched to the S-DPO user whose last window they equal, so ``val_llara`` / ``test_llara`` share
user ids with ``val`` / ``test``.

Candidates use S-DPO's sampler, which reproduces S-DPO's published JSON lists record for record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from napo_lab.data.examples import Built, PrepReport, read_utf8
from napo_lab.data.prepared import DataError
from napo_lab.data.safe_pickle import load_known_pickle

PAD = 4606


def read_id2name(path: Path) -> list[str]:
    """``id::name`` lines -> titles indexed by id (ids must be 0..n-1)."""
    names: dict[int, str] = {}
    for lineno, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        key, sep, name = line.partition("::")
        if not sep or not key.strip().isdigit():
            raise DataError(f"{path}:{lineno}: expected `id::name`, got {line[:60]!r}")
        names[int(key)] = name
    if not names:
        raise DataError(f"{path}: no `id::name` lines (the file is empty); it must list every item's title.")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: item ids are not contiguous 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def _rows(path: Path, pad: int) -> pd.DataFrame:
    df = load_known_pickle(path)
    missing = {"seq", "len_seq", "next"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing columns {sorted(missing)}")
    hist = [[int(i) for i in seq if int(i) != pad] for seq in df["seq"]]
    return pd.DataFrame({"history": hist, "target": df["next"].astype("int64").to_numpy()})


def _assign_users(df: pd.DataFrame, first_user: int, path: Path) -> pd.DataFrame:
    starts = (df["history"].map(len) == 0).to_numpy()
    if len(df) and not starts[0]:
        raise DataError(f"{path}: the first row does not start a user (non-empty history)")
    df = df.copy()
    df["user"] = first_user + starts.cumsum() - 1
    return df


def build(cfg: dict[str, Any], files: dict[str, Path], report: PrepReport) -> Built:
    f = cfg["files"]
    titles = read_id2name(files[f["id2name"]])
    pad = len(titles)
    splits: dict[str, pd.DataFrame] = {}
    next_user = 0
    for split in ("train", "val", "test"):
        df = _assign_users(_rows(files[f[split]], pad), next_user, files[f[split]])
        next_user = int(df["user"].max()) + 1
        splits[split] = df
    report.notes.append(
        "LastFM users are derived from row order: a row with an empty history starts a new user "
        "(train users first, then val, then test)."
    )
    for split, base in (("val_llara", "val"), ("test_llara", "test")):
        if split not in f:
            continue
        llara = _rows(files[f[split]], pad)
        full = splits[base]
        last = full.groupby("user").tail(1)
        index = {(tuple(h), int(t)): int(u) for u, h, t in zip(last["user"], last["history"], last["target"])}
        users = [index.get((tuple(h[-cfg["max_history"]:]), int(t))) for h, t in zip(llara["history"], llara["target"])]
        unmatched = sum(u is None for u in users)
        if unmatched:
            raise DataError(f"{files[f[split]]}: {unmatched} rows are not the last window of a user in {base}")
        llara["user"] = users
        splits[split] = llara
    report.notes.append(
        "val/test are S-DPO's all-window splits (every interaction of the held-out users); "
        "val_llara/test_llara are LLaRA's last-window rows (122 each), matched to the same users."
    )
    return Built(items=pd.DataFrame({"item_id": range(len(titles)), "title": titles}), splits=splits)


def eval_splits(cfg: dict[str, Any]) -> list[str]:
    """The evaluation splits this builder prepares: S-DPO's val/test, and LLaRA's when their files are given."""
    return ["val", "test"] + [s for s in ("val_llara", "test_llara") if s in (cfg.get("files") or {})]
