"""RecPO's data (HoytWen/RecPO, data/movielens_data.py + data/prepare_sft_data.py), rebuilt from raw files.

Every training row looks into the user's *future*: the candidates are the next up to
``n_candidates`` items the user rated (1-2 stars included: they are rated negatives), filled with
random items the user never rated, and each candidate has the score

    s = rating / (1 + step) ** decay          (decay 0.5; rounded to 4 decimals as the public code does)

with ``step`` the item's position in the future (0 = the very next item). A random fill item gets
rating 3 and step 10. The chosen answer (the row's ``target``) is the top-scored candidate; a row is
kept only if the chosen item's rating is >= ``min_chosen_rating`` (4) and the history has >=
``min_train_history`` (5) items. Ties in the score go to the earlier step (napo_lab's rule; the public code
sorts with ``np.argsort(...)[::-1]``, whose tie order is an implementation detail). The history shows
every rated item with its rating; val/test rows are each held-out user's last rating, kept when it is
>= ``test_min_rating`` (4), with 20 seeded candidates (the target + 19 items outside the history).

How this differs from the LLaRA-style windows of ``dataset=movielens``: those keep only ratings >= 3
(so 1-2 stars never appear), the answer is always the next item, and the other candidates are random
catalogue items. Here the answer may be a later, better-rated item and the candidates are mostly the
user's real future items.

``intensity``: ``rating`` (MovieLens stars), or ``constant`` (recency only: every real item gets
rating ``random_rating``, so the score only decays with the step and the chosen answer is the next
item; the only choice for LastFM, which has no ratings; the prompt then shows no ratings). The extra
columns of the prepared tables: ``history_ratings`` (all splits, rating intensity), ``candidate_scores`` and ``candidate_rated`` (train: True for a real
future item, False for a random fill).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napo_lab.data.examples import Built, PrepReport, split_users
from napo_lab.data.prepared import DataError

#: The builder's prepared tables carry RecPO's candidate scores (the config check looks for this).
PREFERENCE_SCORES = True
INTENSITIES = ("rating", "constant")
DEFAULTS = {"intensity": "rating", "decay": 0.5, "random_rating": 3.0, "random_step": 10,
            "min_chosen_rating": 4, "test_min_rating": 4, "min_train_history": 5, "max_train_rows": 10000, "base": None}


def settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``dataset.recpo`` with its defaults filled in, checked."""
    out = {**DEFAULTS, **dict(cfg.get("recpo") or {})}
    if out["intensity"] not in INTENSITIES:
        raise DataError(f"dataset.recpo.intensity={out['intensity']!r}: use one of {' | '.join(INTENSITIES)}")
    return out


def candidate_score(rating: float | np.ndarray, step: int | np.ndarray, decay: float = 0.5) -> np.ndarray:
    """RecPO's score ``rating / (1 + step) ** decay``, rounded to 4 decimals (as the public code)."""
    return np.round(np.asarray(rating, dtype=np.float64) / (1.0 + np.asarray(step, dtype=np.float64)) ** decay, 4)


def top_future(ratings: Sequence[float], decay: float) -> int:
    """Index (step) of the top-scored future item; ties go to the earlier step."""
    scores = candidate_score(np.asarray(ratings, dtype=np.float64), np.arange(len(ratings)), decay)
    return int(np.argmax(scores))  # argmax returns the first of equal maxima


def future_candidates(future: Sequence[int], future_ratings: Sequence[float], fill: Sequence[int],
                      n_candidates: int, s: Mapping[str, Any], rng: np.random.Generator
                      ) -> tuple[int, list[int], list[float], list[bool]]:
    """(chosen item, candidates (shuffled), their scores, their rated flags) for one training row.

    ``future`` holds the next items (at most ``n_candidates`` are used), ``fill`` the random unseen
    items that complete the list to ``n_candidates``."""
    future = [int(i) for i in future][:n_candidates]
    ratings = [float(r) for r in future_ratings][: len(future)]
    n_fill = n_candidates - len(future)
    items = future + [int(i) for i in fill][:n_fill]
    if len(items) != n_candidates:
        raise DataError(f"only {len(items)} candidates for a row; the catalogue is too small for {n_candidates}")
    all_ratings = ratings + [float(s["random_rating"])] * n_fill
    steps = list(range(len(future))) + [int(s["random_step"])] * n_fill
    scores = candidate_score(all_ratings, steps, float(s["decay"]))
    chosen = future[top_future(ratings, float(s["decay"]))]
    if float(scores.max()) > float(scores[future.index(chosen)]):
        raise DataError("a random fill item outscores every future item; lower dataset.recpo.random_rating")
    rated = [True] * len(future) + [False] * n_fill
    order = rng.permutation(n_candidates)
    return (chosen, [items[i] for i in order], [float(scores[i]) for i in order], [rated[i] for i in order])


def _fill(rng: np.random.Generator, n: int, n_items: int, seen: set[int]) -> list[int]:
    """n distinct items the user never rated (rejection sampling; the catalogue is much larger)."""
    out: list[int] = []
    if n_items - len(seen) < n:
        raise DataError(f"a user rated {len(seen)} of {n_items} items: too few unseen items for the random fill")
    while len(out) < n:
        i = int(rng.integers(n_items))
        if i not in seen and i not in out:
            out.append(i)
    return out


def train_rows(seqs: Mapping[int, Sequence[int]], ratings: Mapping[int, Sequence[float]], n_items: int,
               cfg: Mapping[str, Any], s: Mapping[str, Any], report: PrepReport) -> pd.DataFrame:
    """Every (user, position) with >= min_history items before it and a chosen rating >= the threshold,
    a seeded subset of ``max_train_rows`` of them, each with its 20 scored candidates."""
    h_min = max(int(cfg["min_history"]), int(s["min_train_history"]))
    h_max, n_c, decay = int(cfg["max_history"]), int(cfg["n_candidates"]), float(s["decay"])
    keep: list[tuple[int, int]] = []
    low = 0
    for u, seq in seqs.items():
        r = ratings[u]
        for t in range(h_min, len(seq)):
            future_r = r[t:t + n_c]
            if s["min_chosen_rating"] is not None and future_r[top_future(future_r, decay)] < s["min_chosen_rating"]:
                low += 1
                continue
            keep.append((u, t))
    report.warn("recpo/train_rows_chosen_rating_below_threshold_dropped", low)
    limit = s["max_train_rows"]
    if limit is not None and len(keep) > int(limit):
        pick = np.sort(np.random.default_rng([int(cfg.get("seed", 0)), 4099]).choice(len(keep), int(limit), replace=False))
        report.warn("recpo/train_rows_subsampled_to_max_train_rows", len(keep) - int(limit))
        keep = [keep[i] for i in pick]
    rows = []
    for u, t in keep:
        seq, r = seqs[u], ratings[u]
        rng = np.random.default_rng([int(cfg.get("seed", 0)), 97, int(u), int(t)])
        future = seq[t:t + n_c]
        fill = _fill(rng, n_c - len(future), n_items, set(seq))
        chosen, cands, scores, rated = future_candidates(future, r[t:t + n_c], fill, n_c, s, rng)
        lo = max(0, t - h_max)
        rows.append((u, list(seq[lo:t]), [int(x) for x in r[lo:t]], chosen, cands, scores, rated))
    return pd.DataFrame(rows, columns=["user", "history", "history_ratings", "target", "candidates",
                                       "candidate_scores", "candidate_rated"])


def last_rows(seqs: Mapping[int, Sequence[int]], ratings: Mapping[int, Sequence[float]], cfg: Mapping[str, Any],
              s: Mapping[str, Any], split: str, report: PrepReport) -> pd.DataFrame:
    """Each user's last item as the target, kept when its rating >= test_min_rating."""
    rows, low = [], 0
    h_max = int(cfg["max_history"])
    for u, seq in seqs.items():
        r = ratings[u]
        if len(seq) < 2:
            continue
        if s["test_min_rating"] is not None and r[-1] < s["test_min_rating"]:
            low += 1
            continue
        lo = max(0, len(seq) - 1 - h_max)
        rows.append((u, list(seq[lo:-1]), [int(x) for x in r[lo:-1]], int(seq[-1])))
    report.warn(f"recpo/{split}_rows_target_rating_below_threshold_dropped", low)
    return pd.DataFrame(rows, columns=["user", "history", "history_ratings", "target"])


def from_sequences(seqs: Mapping[int, Sequence[int]], ratings: Mapping[int, Sequence[float]], n_items: int,
                   cfg: Mapping[str, Any], s: Mapping[str, Any], report: PrepReport) -> dict[str, pd.DataFrame]:
    """Seeded 8:1:1 user split, then RecPO train rows and last-item val/test rows."""
    parts = split_users(seqs, int(cfg.get("seed", 0)))
    sub = {name: ({u: seqs[u] for u in users}, {u: ratings[u] for u in users}) for name, users in parts.items()}
    out = {"train": train_rows(*sub["train"], n_items, cfg, s, report),
           "val": last_rows(*sub["val"], cfg, s, "val", report),
           "test": last_rows(*sub["test"], cfg, s, "test", report)}
    if s["intensity"] == "constant":  # no ratings to show: the prompt is the plain one
        out = {k: v.drop(columns=["history_ratings"]) for k, v in out.items()}
    return out


def build_movielens(cfg: dict[str, Any], files: dict[str, Path], report: PrepReport) -> Built:
    """MovieLens-100K: every rating (1-5 stars), ordered by timestamp (ties: u.data row order)."""
    from napo_lab.data.sources.movielens import N_ITEMS, read_items, read_ratings

    s = settings(cfg)
    f = cfg["files"]
    titles = read_items(files[f["items"]], report)
    df = read_ratings(files[f["ratings"]]).sort_values("timestamp", kind="stable")
    seqs = {int(u) - 1: (g["item"] - 1).tolist() for u, g in df.groupby("user", sort=True)}
    if s["intensity"] == "rating":
        ratings = {int(u) - 1: g["rating"].astype(float).tolist() for u, g in df.groupby("user", sort=True)}
    else:
        ratings = {u: [float(s["random_rating"])] * len(q) for u, q in seqs.items()}
    report.notes.append(
        f"RecPO data (intensity={s['intensity']}): all MovieLens ratings 1-5 in timestamp order; users split "
        "8:1:1 (seeded); train rows look up to n_candidates items into the future (see napo_lab/data/sources/recpo.py)."
    )
    splits = from_sequences(seqs, ratings, N_ITEMS, cfg, s, report)
    return Built(items=pd.DataFrame({"item_id": range(N_ITEMS), "title": titles}), splits=splits)


def build_sequences(cfg: dict[str, Any], files: dict[str, Path], report: PrepReport) -> Built:
    """Recency only, for a dataset without ratings (``dataset.recpo.base``: lastfm): the base builder's
    train windows are chained back into each user's sequence (the first window's history, then every
    target in order) and every item gets the constant rating ``random_rating``."""
    import importlib

    s = settings(cfg)
    if s["intensity"] != "constant":
        raise DataError(f"dataset.recpo.intensity={s['intensity']!r}: {s['base']} has no ratings; use constant")
    if not s["base"]:
        raise DataError("dataset.recpo.base is required (the builder whose windows give the sequences, e.g. lastfm)")
    base = importlib.import_module(f"napo_lab.data.sources.{s['base']}").build(cfg, files, report)
    train = base.splits["train"]
    seqs: dict[int, list[int]] = {}
    for u, g in train.groupby("user", sort=True):
        seq = [int(i) for i in g["history"].iloc[0]]
        seq += [int(t) for t in g["target"]]
        seqs[int(u)] = seq
    ratings = {u: [float(s["random_rating"])] * len(q) for u, q in seqs.items()}
    splits = {"train": train_rows(seqs, ratings, len(base.items), cfg, s, report).drop(columns=["history_ratings"])}
    for name in dict.fromkeys((cfg["val_split"], cfg["test_split"])):
        if name not in base.splits:
            raise DataError(f"dataset split {name!r} is not prepared by {s['base']}; use one of {sorted(base.splits)}")
        splits[name] = base.splits[name]
    report.notes.append(f"RecPO data from {s['base']} (no ratings): recency only, every item rated "
                        f"{s['random_rating']}; the chosen answer is always the next item.")
    return Built(items=base.items, splits=splits, default_val_split=cfg["val_split"],
                 default_test_split=cfg["test_split"])


def eval_splits(cfg: dict[str, Any]) -> list[str]:
    """The evaluation splits this builder prepares (dataset.val_split / test_split name one)."""
    base = (cfg.get("recpo") or {}).get("base")
    if base:
        import importlib

        names = importlib.import_module(f"napo_lab.data.sources.{base}").eval_splits(cfg)
        return [n for n in names if n in (cfg.get("val_split"), cfg.get("test_split"))] or names
    return ["val", "test"]
