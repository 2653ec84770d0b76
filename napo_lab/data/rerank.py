"""DPO4Rec's re-ranking data (KAR's protocol, small): 10-item lists from MovieLens' raw ratings.

Per user (all ratings 1-5 in timestamp order, ties in file order): the last ``2 * n_next`` ratings
are two lists' positives-to-be, the ``history`` ratings before them the prompt. The train list holds
the ``n_next`` items after the history, the test list the ``n_next`` after those; each is filled to
``list_size`` with items the user never rated (label 0) and shuffled (the initial order the list
model reads). An item is relevant (label 1) when its rating is > ``threshold``. Lists without a
relevant item have no NDCG and are left out of the metrics (counted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def _list(rng: np.random.Generator, items: Sequence[int], ratings: Sequence[int], seen: set[int], n_items: int,
          size: int, threshold: float) -> tuple[list[int], list[int]]:
    fill: list[int] = []
    while len(fill) < size - len(items):
        i = int(rng.integers(n_items))
        if i not in seen and i not in fill:
            fill.append(i)
    all_items = [int(i) for i in items] + fill
    labels = [int(r > threshold) for r in ratings] + [0] * len(fill)
    order = rng.permutation(len(all_items))
    return [all_items[i] for i in order], [labels[i] for i in order]


def rerank_lists(ratings: pd.DataFrame, n_items: int, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """``ratings``: user, item (0-based), rating, timestamp. One row per sampled user:
    user, history, history_ratings, train_items, train_labels, test_items, test_labels."""
    n_next, size, hist = int(cfg["n_next"]), int(cfg["list_size"]), int(cfg["history"])
    df = ratings.sort_values("timestamp", kind="stable")
    seqs = {int(u): (g["item"].tolist(), g["rating"].tolist()) for u, g in df.groupby("user", sort=True)}
    eligible = sorted(u for u, (s, _) in seqs.items() if len(s) >= hist + 2 * n_next)
    rng = np.random.default_rng([int(cfg["seed"]), 4111])
    users = sorted(rng.choice(eligible, size=min(int(cfg["n_users"]), len(eligible)), replace=False).tolist())
    rows = []
    for u in users:
        items, stars = seqs[u]
        cut = len(items) - 2 * n_next
        r = np.random.default_rng([int(cfg["seed"]), 4112, u])
        seen = set(items)
        train = _list(r, items[cut:cut + n_next], stars[cut:cut + n_next], seen, n_items, size, cfg["threshold"])
        test = _list(r, items[cut + n_next:], stars[cut + n_next:], seen, n_items, size, cfg["threshold"])
        rows.append((u, items[cut - hist:cut], stars[cut - hist:cut], *train, *test))
    return pd.DataFrame(rows, columns=["user", "history", "history_ratings", "train_items", "train_labels",
                                       "test_items", "test_labels"])


def reasoning_prompt(titles: Sequence[str], history: Sequence[int], ratings: Sequence[int]) -> str:
    """The prompt the LLM answers with a short reasoning about the user's preferences (DPO4Rec's step 1;
    the wording is napo_lab's, KAR-style: the rated history, then the question)."""
    lines = "\n".join(f"- {titles[int(i)]} (rated {int(r)}/5)" for i, r in zip(history, ratings))
    return (f"A user watched and rated these movies, oldest first:\n{lines}\n"
            "In two sentences, describe this user's movie preferences (genres, eras, moods) and what they "
            "would enjoy next.")


def load_movielens(dataset_cfg: Mapping[str, Any], data_dir, cache_dir) -> tuple[pd.DataFrame, list[str]]:
    """MovieLens-100K's raw ratings (0-based user and item ids) and cleaned titles, from the files of
    ``dataset=movielens`` (local copy under the data directory, else the verified download)."""
    from pathlib import Path

    from napo_lab.data.examples import PrepReport
    from napo_lab.data.fetch import resolve
    from napo_lab.data.sources.movielens import read_items, read_ratings

    files = dataset_cfg["files"]
    paths = resolve([files["ratings"], files["items"]], data_dir, Path(cache_dir),
                    allow_download=dataset_cfg.get("source", "auto") != "local")
    titles = read_items(paths[files["items"]], PrepReport())
    df = read_ratings(paths[files["ratings"]])
    return df.assign(user=df["user"] - 1, item=df["item"] - 1), titles
