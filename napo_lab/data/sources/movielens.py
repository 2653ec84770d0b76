"""MovieLens-100K with LLaRA's protocol, train rebuilt from the raw ratings.

Protocol (LLaRA, verified on its 189 published val/test rows): keep ratings >= 3; order each user's
positives by timestamp (ties: original ``u.data`` row order); the history is the <= 10 positives
before the target; users split 8:1:1. LLaRA's val (94) and test (95) rows are used *as given*
(their history order is kept) and each is matched to its user in the raw ratings. LLaRA's original
train file was never obtainable, so train is *reconstructed*: every window of the remaining 754
users. Item ids are ``u.item`` id - 1 (0..1681), as in LLaRA.

Titles are cleaned here (not as LLaRA does): the trailing " (YYYY)" is removed with a regex, a
trailing article (", The", ", A", ", An" and common foreign ones) moves to the front, and titles that
collide afterwards get their year back (then " [2]"... if still equal, e.g. the 18 doubly-listed movies).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napo_lab.data.examples import Built, PrepReport, windows
from napo_lab.data.prepared import DataError
from napo_lab.data.safe_pickle import load_known_pickle

N_ITEMS = 1682
# sha256 of the int64 (user, item, rating, timestamp) matrix of ML-100K in u.data row order: lets the
# RecBole copy (ml-100k.inter) and GroupLens' u.data be recognised as the same ratings.
RATINGS_CONTENT_SHA256 = "d0366dc73dcd6c6620782fc3436fc07a4a003fe17c863aee0829c53db6a8f574"
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(?P<main>.+?), (?P<art>The|A|An|Les|La|Le|Il|Das|Die|El|L')(?P<rest>(?: \(.*\))?)$")


def clean_title(raw: str) -> tuple[str, str | None]:
    """("Shawshank Redemption, The (1994)") -> ("The Shawshank Redemption", "1994")."""
    raw = raw.strip()
    match = _YEAR.search(raw)
    year = match.group(1) if match else None
    title = raw[: match.start()] if match else raw
    art = _ARTICLE.match(title)
    if art:
        sep = "" if art["art"].endswith("'") else " "
        title = f"{art['art']}{sep}{art['main']}{art['rest']}"
    return title.strip(), year


def read_items(path: Path, report: PrepReport) -> list[str]:
    """u.item (GroupLens ships it in Latin-1) -> cleaned, distinct titles indexed by id - 1."""
    raw: dict[int, str] = {}
    for lineno, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0].isdigit():
            raise DataError(f"{path}:{lineno}: not a u.item line (`id|title|...`)")
        raw[int(fields[0]) - 1] = fields[1]
    if sorted(raw) != list(range(N_ITEMS)):
        raise DataError(f"{path}: expected item ids 1..{N_ITEMS}")
    cleaned = [clean_title(raw[i]) for i in range(N_ITEMS)]
    counts = Counter(t for t, _ in cleaned)
    titles = [f"{t} ({y})" if counts[t] > 1 and y else t for t, y in cleaned]
    report.warn("movielens/title_year_kept_to_disambiguate", sum(counts[t] > 1 and bool(y) for t, y in cleaned))
    return titles


def read_ratings(path: Path) -> pd.DataFrame:
    """ml-100k.inter (RecBole, header line) or u.data (GroupLens, no header) -> int64 columns."""
    header = 0 if path.suffix == ".inter" else None
    df = pd.read_csv(path, sep="\t", header=header, names=["user", "item", "rating", "timestamp"])
    if df.shape[1] != 4 or df.isna().any().any():
        raise DataError(f"{path}: expected 4 tab-separated columns user, item, rating, timestamp")
    return df.astype("int64")


def _content_sha256(df: pd.DataFrame) -> str:
    return hashlib.sha256(np.ascontiguousarray(df.to_numpy(dtype=np.int64)).tobytes()).hexdigest()


def _llara_rows(path: Path) -> pd.DataFrame:
    df = load_known_pickle(path)
    hist = [[int(i) for i, _ in seq if int(i) != N_ITEMS] for seq in df["seq"]]
    return pd.DataFrame({"history": hist, "target": [int(t[0]) for t in df["next"]]})


def build(cfg: dict[str, Any], files: dict[str, Path], report: PrepReport) -> Built:
    f = cfg["files"]
    titles = read_items(files[f["items"]], report)
    ratings = read_ratings(files[f["ratings"]])
    content = _content_sha256(ratings)
    report.extra["ratings_content_sha256"] = content
    if content != RATINGS_CONTENT_SHA256:
        report.warn("movielens/ratings_differ_from_ml100k", 1, str(files[f["ratings"]]))
    pos = ratings[ratings["rating"] >= int(cfg.get("min_rating", 3))]
    pos = pos.sort_values("timestamp", kind="stable")
    seqs = {int(u): (g["item"] - 1).tolist() for u, g in pos.groupby("user", sort=True)}
    # items sharing the user's last timestamp: LLaRA's tie order is unknown, any of them may be "last"
    last_ts = pos.groupby("user")["timestamp"].transform("max") == pos["timestamp"]
    last_items = {int(u): set((g["item"] - 1).tolist()) for u, g in pos[last_ts].groupby("user")}
    sets = {u: set(s) for u, s in seqs.items()}
    held: dict[str, pd.DataFrame] = {}
    taken: set[int] = set()
    exact = consistent = 0
    stamp = {(int(u), int(i) - 1): int(ts) for u, i, ts in pos[["user", "item", "timestamp"]].itertuples(index=False)}
    for split in ("val", "test"):
        rows = _llara_rows(files[f[split]])
        users = []
        for h, t in zip(rows["history"], rows["target"]):
            # the user whose last positive is the target and whose positives contain the history
            match = [u for u in seqs if t in last_items[u] and set(h) <= sets[u] and u not in taken]
            if len(match) != 1:
                raise DataError(f"{files[f[split]]}: cannot match row (target {t}) to one MovieLens user ({len(match)} found)")
            users.append(match[0] - 1)
            taken.add(match[0])
            exact += seqs[match[0]][-1 - len(h):] == [*h, t]
            times = [stamp[(match[0], i)] for i in [*h, t]]
            consistent += times == sorted(times)
        rows["user"] = users
        held[split] = rows
    report.extra["llara_rows_reproduced_exactly"] = exact
    report.extra["llara_rows_in_timestamp_order"] = consistent
    train_seqs = {u - 1: s for u, s in seqs.items() if u not in taken}
    train = windows(train_seqs, int(cfg["max_history"]))
    report.notes.append(
        "MovieLens train is RECONSTRUCTED from the raw ratings (LLaRA's train file was unavailable): "
        f"every window of the {len(train_seqs)} users outside LLaRA's val/test; val/test are LLaRA's rows as "
        f"given: of {sum(map(len, held.values()))} rows, {exact} equal our chronological rebuild exactly and "
        f"{consistent} list their items in non-decreasing timestamp order (the others differ in how "
        "same-timestamp items are ordered). Users are u.data user ids - 1."
    )
    report.notes.append("Titles: year removed, trailing article moved to the front; colliding titles keep their year.")
    items = pd.DataFrame({"item_id": range(N_ITEMS), "title": titles})
    return Built(items=items, splits={"train": train, **held})


def eval_splits(cfg: dict[str, Any]) -> list[str]:
    """The evaluation splits this builder prepares (dataset.val_split / test_split name one)."""
    return ["val", "test"]
