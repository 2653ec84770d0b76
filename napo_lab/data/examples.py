"""Shared building blocks for the source builders: windows, user splits, candidates, validation.

Every check either raises ``DataError`` (the data cannot be used as is) or drops / fixes rows and
counts it in ``PrepReport.warnings``, which ends up in the manifest: nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napo_lab.data.prepared import DataError
from napo_lab.data.sampling import sdpo_candidates, seeded_candidates

log = logging.getLogger(__name__)


@dataclass
class PrepReport:
    """Counted warnings and free-text notes collected while preparing (copied into the manifest)."""

    warnings: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def warn(self, kind: str, count: int = 1, detail: str = "") -> None:
        if count <= 0:
            return
        self.warnings[kind] += count
        log.warning("%s: %d%s", kind, count, f" ({detail})" if detail else "")


@dataclass
class Built:
    """What a source builder returns: items (item_id, title) and the split tables."""

    items: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    default_val_split: str = "val"
    default_test_split: str = "test"


def read_utf8(path: Path) -> str:
    """Read a text file that must be UTF-8; name the line of the first bad byte otherwise."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start}, line {line}); re-save it as UTF-8") from None


def windows(sequences: Mapping[int, Sequence[int]], max_history: int, last_only: bool = False) -> pd.DataFrame:
    """One row per (user, position t >= 1): history = up to ``max_history`` items before t, oldest first."""
    rows: list[tuple[int, list[int], int]] = []
    for user, seq in sequences.items():
        positions = [len(seq) - 1] if last_only else range(1, len(seq))
        for t in positions:
            if t < 1:
                continue
            rows.append((int(user), [int(i) for i in seq[max(0, t - max_history):t]], int(seq[t])))
    return pd.DataFrame(rows, columns=["user", "history", "target"])


def split_users(users: Iterable[int], seed: int, ratios: tuple[int, int, int] = (8, 1, 1)) -> dict[str, list[int]]:
    """Seeded 8:1:1 user split (val / test sizes rounded down, train takes the rest)."""
    users = sorted(int(u) for u in users)
    order = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 811]))).permutation(len(users))
    shuffled = [users[i] for i in order]
    total = sum(ratios)
    n_val = len(users) * ratios[1] // total
    n_test = len(users) * ratios[2] // total
    return {
        "val": sorted(shuffled[:n_val]),
        "test": sorted(shuffled[n_val:n_val + n_test]),
        "train": sorted(shuffled[n_val + n_test:]),
    }


def add_candidates(
    df: pd.DataFrame, n_items: int, n_candidates: int, sampler: str, seed: int = 0
) -> pd.DataFrame:
    """Attach a frozen candidate list to every row (``sampler`` = "sdpo" or "seeded")."""
    if sampler == "sdpo":
        cands = [sdpo_candidates(h, t, n_items, n_candidates) for h, t in zip(df["history"], df["target"])]
    elif sampler == "seeded":
        cands = [
            seeded_candidates(h, t, n_items, n_candidates, seed, u)
            for u, h, t in zip(df["user"], df["history"], df["target"])
        ]
    else:
        raise DataError(f"unknown candidate sampler {sampler!r} (use 'sdpo' or 'seeded')")
    out = df.copy()
    out["candidates"] = cands
    return out


def clean_split(
    df: pd.DataFrame, split: str, n_items: int, min_history: int, max_history: int, report: PrepReport
) -> pd.DataFrame:
    """Validate one split's rows before candidates are drawn; drop/trim with counted warnings."""
    df = df.reset_index(drop=True)
    ids = [i for h in df["history"] for i in h] + df["target"].tolist()
    bad = [i for i in ids if not 0 <= int(i) < n_items]
    if bad:
        raise DataError(
            f"split {split!r}: {len(bad)} item ids outside the catalogue 0..{n_items - 1} (e.g. {bad[0]}); "
            "the item table and the interactions do not match"
        )
    long = df["history"].map(len) > max_history
    if long.any():
        report.warn(f"{split}/history_truncated_to_max_history", int(long.sum()))
        df["history"] = [list(h)[-max_history:] for h in df["history"]]
        if "history_ratings" in df.columns:
            df["history_ratings"] = [list(r)[-max_history:] for r in df["history_ratings"]]
    in_hist = np.array([int(t) in set(map(int, h)) for h, t in zip(df["history"], df["target"])], dtype=bool)
    report.warn(f"{split}/target_in_history_dropped", int(in_hist.sum()))
    short = (df["history"].map(len) < min_history).to_numpy()
    report.warn(f"{split}/short_history_dropped", int((short & ~in_hist).sum()), f"len(history) < {min_history}")
    return df[~(in_hist | short)].reset_index(drop=True)


def check_candidates(df: pd.DataFrame, split: str, n_candidates: int) -> None:
    """Contract check: n ids, target exactly once, none from the history."""
    for row, (h, t, c) in enumerate(zip(df["history"], df["target"], df["candidates"])):
        c = [int(x) for x in c]
        if len(c) != n_candidates or c.count(int(t)) != 1 or set(c) & set(map(int, h)) or len(set(c)) != len(c):
            raise DataError(f"split {split!r} row {row}: invalid candidate list {c} for target {t}")


def disambiguate_titles(titles: Sequence[str], report: PrepReport, source: str) -> list[str]:
    """Refuse empty titles; make duplicates distinct by appending " [2]", " [3]"... in id order."""
    titles = [str(t).strip() for t in titles]
    empty = [i for i, t in enumerate(titles) if not t]
    if empty:
        raise DataError(f"{source}: {len(empty)} empty titles (item ids {empty[:5]}); give every item a title")
    seen: Counter[str] = Counter()
    out: list[str] = []
    n_dup = 0
    for t in titles:
        seen[t] += 1
        if seen[t] > 1:
            n_dup += 1
            t = f"{t} [{seen[t]}]"
        out.append(t)
    if len(set(out)) != len(out):  # a suffixed title collided with a real one: fall back to ids
        out = [t if seen[titles[i]] == 1 else f"{titles[i]} [id {i}]" for i, t in enumerate(out)]
    report.warn("duplicate_titles_disambiguated", n_dup, source)
    return out
