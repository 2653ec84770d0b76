"""Re-ranking metrics of one list (DPO4Rec / KAR): NDCG@K and MAP@K with binary labels.

The list is ranked by descending score (ties: the earlier position). ``ndcg_at_k`` = DCG@K / IDCG@K
with gain ``label`` and discount ``1 / log2(rank + 1)``; ``map_at_k`` = the average over the relevant
items ranked in the top K of the precision at their rank, divided by ``min(K, #relevant)``. Both are
NaN for a list without a relevant item (the caller leaves it out and counts it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _ranked_labels(scores: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(labels, dtype=np.float64)[order]


def ndcg_at_k(scores: Sequence[float], labels: Sequence[int], k: int) -> float:
    ranked = _ranked_labels(scores, labels)
    ideal = np.sort(np.asarray(labels, dtype=np.float64))[::-1]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = float((ideal[:k] * disc[: len(ideal[:k])]).sum())
    if idcg == 0.0:
        return math.nan
    return float((ranked[:k] * disc[: len(ranked[:k])]).sum()) / idcg


def map_at_k(scores: Sequence[float], labels: Sequence[int], k: int) -> float:
    ranked = _ranked_labels(scores, labels)
    n_rel = int(np.asarray(labels).sum())
    if n_rel == 0:
        return math.nan
    hits = np.cumsum(ranked[:k])
    precision = hits / np.arange(1, len(hits) + 1)
    return float((precision * ranked[:k]).sum()) / min(k, n_rel)
