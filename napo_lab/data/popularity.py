"""Item popularity from the train split, and head / mid / tail bands for popularity metrics.

Popularity-bias metrics (AveragePopularity, TailPercentage, HR@1 per band) need one number per item.
We use *train interactions*: every occurrence of the item in a train user's chronological sequence.
With sliding-window rows an interaction appears in many histories, so counting history cells would
over-count; instead each train user contributes the history of their earliest row (the interactions
before their first kept target) plus every target of their rows. For LastFM / MovieLens / custom /
synthetic this equals the user's full interaction sequence; for Goodreads (one record per user) it is
the record's 10 titles plus its target.

Band rule (``popularity_bands``): order items by (train count descending, item id ascending); the
first ``round(head_ratio * n_items)`` items are "head", the last ``round(tail_ratio * n_items)`` are
"tail", the rest "mid". Ties at a boundary are broken by item id, so the band sizes are exact and
deterministic. Defaults (conf/dataset/*.yaml ``popularity``): head 20 %, tail 20 %.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HEAD, MID, TAIL = "head", "mid", "tail"
BANDS = (HEAD, MID, TAIL)


def train_counts(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """Train interactions per item (int64 array of length ``n_items``), as defined above."""
    counts = np.zeros(n_items, dtype=np.int64)
    if len(train) == 0:
        return counts
    np.add.at(counts, train["target"].to_numpy(dtype=np.int64), 1)
    lengths = train["history"].map(len).to_numpy()
    order = np.lexsort((np.arange(len(train)), lengths, train["user"].to_numpy()))
    users = train["user"].to_numpy()[order]
    first = order[np.r_[True, users[1:] != users[:-1]]]
    for hist in train["history"].iloc[first]:
        np.add.at(counts, np.asarray(hist, dtype=np.int64), 1)
    return counts


def popularity_bands(train_counts: np.ndarray, head_ratio: float = 0.2, tail_ratio: float = 0.2) -> np.ndarray:
    """Band of every item ("head" / "mid" / "tail", a numpy str array indexed by item id)."""
    counts = np.asarray(train_counts)
    if not (0.0 <= head_ratio <= 1.0 and 0.0 <= tail_ratio <= 1.0 and head_ratio + tail_ratio <= 1.0):
        raise ValueError(f"need 0 <= head_ratio, tail_ratio and head+tail <= 1, got {head_ratio}, {tail_ratio}")
    n = len(counts)
    n_head = int(round(head_ratio * n))
    n_tail = min(int(round(tail_ratio * n)), n - n_head)
    order = np.lexsort((np.arange(n), -counts))  # count desc, then id asc
    bands = np.full(n, MID, dtype="<U4")
    bands[order[:n_head]] = HEAD
    if n_tail:
        bands[order[n - n_tail:]] = TAIL
    return bands


def band_codes(bands: np.ndarray) -> np.ndarray:
    """Integer codes 0 = head, 1 = mid, 2 = tail (handy for tensors)."""
    lookup = {band: code for code, band in enumerate(BANDS)}
    return np.array([lookup[str(b)] for b in bands], dtype=np.int64)
