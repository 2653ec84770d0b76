"""A small generated dataset with the real schema, for fast tests. Learnable by construction.

Items form ``n_clusters`` chains of ``cluster_size`` items. A user picks a chain and a start, then
walks it (next item = following item in the chain, wrapping) with probability ``p_follow``, else jumps
to a random item. A sequential model that learns "next in chain" reaches HR@1 near ``p_follow`` on
20 candidates, far above the 1/20 of chance. Titles are short and distinct ("Amber Fox", ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from napo_lab.data.examples import Built, PrepReport, windows

_ADJ = ["Amber", "Blue", "Crimson", "Dusty", "Emerald", "Frozen", "Golden", "Hidden", "Ivory", "Jade",
        "Lunar", "Misty", "Noble", "Olive", "Purple", "Quiet"]
_NOUN = ["Fox", "River", "Tower", "Garden", "Comet", "Harbor", "Lantern", "Meadow", "Falcon", "Canyon",
         "Violin", "Orchard", "Anchor", "Beacon", "Glacier", "Willow"]


def synthetic_titles(n: int) -> list[str]:
    if n > len(_ADJ) * len(_NOUN):
        raise ValueError(f"at most {len(_ADJ) * len(_NOUN)} synthetic items")
    return [f"{_ADJ[i % len(_ADJ)]} {_NOUN[(i // len(_ADJ) + i) % len(_NOUN)]}" for i in range(n)]


def build(cfg: dict[str, Any], files: dict[str, Any], report: PrepReport) -> Built:
    n_clusters, size = int(cfg.get("n_clusters", 8)), int(cfg.get("cluster_size", 8))
    n_items = n_clusters * size
    p_follow = float(cfg.get("p_follow", 0.9))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(cfg.get("seed", 0)), 5])))
    n_users = {s: int(cfg.get(f"n_{s}_users", d)) for s, d in (("train", 96), ("val", 48), ("test", 48))}
    lo, hi = int(cfg.get("min_len", 5)), int(cfg.get("max_len", 9))
    seqs: dict[int, list[int]] = {}
    for user in range(sum(n_users.values())):
        chain = int(rng.integers(n_clusters))
        pos = int(rng.integers(size))
        seq = [chain * size + pos]
        for _ in range(int(rng.integers(lo, hi + 1)) - 1):
            if rng.random() < p_follow:
                pos = (pos + 1) % size
                nxt = chain * size + pos
            else:
                nxt = int(rng.integers(n_items))
            if nxt in seq:  # keep targets out of the history: walk on instead of repeating
                pos = (pos + 1) % size
                nxt = chain * size + pos
            if nxt in seq:
                break
            seq.append(nxt)
        seqs[user] = seq
    first_val = n_users["train"]
    first_test = first_val + n_users["val"]
    max_h = int(cfg["max_history"])
    splits = {
        "train": windows({u: s for u, s in seqs.items() if u < first_val}, max_h),
        "val": windows({u: s for u, s in seqs.items() if first_val <= u < first_test}, max_h, last_only=True),
        "test": windows({u: s for u, s in seqs.items() if u >= first_test}, max_h, last_only=True),
    }
    report.notes.append(f"synthetic: {n_clusters} item chains of {size}; next item follows the chain "
                        f"with p={p_follow}. Generated, no source files.")
    return Built(items=pd.DataFrame({"item_id": range(n_items), "title": synthetic_titles(n_items)}), splits=splits)


def eval_splits(cfg: dict[str, Any]) -> list[str]:
    """The evaluation splits this builder prepares (dataset.val_split / test_split name one)."""
    return ["val", "test"]
