"""Re-ranking metrics of one list (DPO4Rec / KAR): NDCG@K and MAP@K with binary labels, as KAR's
``evaluate_rerank`` (YunjiaXi/Open-World-Knowledge-Augmented-Recommendation, RS/utils.py) defines them.

The list is ranked by descending score (ties: the earlier position). ``ndcg_at_k`` = DCG@K / IDCG@K
with gain ``2^label - 1`` and discount ``1 / log2(rank + 1)``; ``map_at_k`` = the mean, over the
relevant items ranked in the top K, of the precision at their rank (divided by the number of relevant
items *in the top K*, as KAR does). Both are 0 for a list without a relevant item in reach (KAR's
convention: such lists count, as zeros).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ranked_labels(scores: Sequence[float], labels: Sequence[int]) -> np.ndarray:
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(labels, dtype=np.float64)[order]


def ndcg_at_k(scores: Sequence[float], labels: Sequence[int], k: int) -> float:
    ranked = _ranked_labels(scores, labels)[:k]
    ideal = np.sort(np.asarray(labels, dtype=np.float64))[::-1][:k]
    disc = 1.0 / np.log2(np.arange(2, len(ranked) + 2))
    idcg = float(((2.0 ** ideal - 1.0) * disc).sum())
    return float(((2.0 ** ranked - 1.0) * disc).sum()) / idcg if idcg else 0.0


def map_at_k(scores: Sequence[float], labels: Sequence[int], k: int) -> float:
    ranked = _ranked_labels(scores, labels)[:k] >= 1
    if not ranked.any():
        return 0.0
    hits = np.cumsum(ranked)
    return float((hits / np.arange(1, len(ranked) + 1))[ranked].sum()) / int(ranked.sum())
