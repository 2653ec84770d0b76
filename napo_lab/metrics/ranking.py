"""Ranking metrics over a per-row candidate score matrix (evaluation by scoring).

Each row has C candidates (20 in the papers' protocol) and exactly one relevant item, the target.
All metrics here are therefore *sampled* metrics over C candidates, not full-catalogue metrics;
reports must label them so.

Ties are broken pessimistically: the target's rank is 1 + (candidates scoring strictly higher)
+ (other candidates scoring exactly the same). A model that gives every candidate the same score
thus gets the worst rank C, never a free hit from the candidate order (the target's position in
the shuffled list would otherwise leak into the metric).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np


def _check_scores(scores: np.ndarray, target_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    target_index = np.asarray(target_index, dtype=np.int64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, C], got shape {scores.shape}")
    if target_index.shape != (scores.shape[0],):
        raise ValueError(f"target_index must be [N={scores.shape[0]}], got shape {target_index.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; a NaN cannot be ranked")
    if target_index.size and (target_index.min() < 0 or target_index.max() >= scores.shape[1]):
        raise ValueError(f"target_index outside [0, {scores.shape[1]})")
    return scores, target_index


def ranks(scores: np.ndarray, target_index: np.ndarray) -> np.ndarray:
    """1-based rank of the target in each row, with pessimistic tie-breaking ([N] int64)."""
    scores, target_index = _check_scores(scores, target_index)
    rows = np.arange(scores.shape[0])
    target_score = scores[rows, target_index][:, None]
    higher = (scores > target_score).sum(axis=1)
    tied_others = (scores == target_score).sum(axis=1) - 1
    return (1 + higher + tied_others).astype(np.int64)


def ranking_metrics(
    scores: np.ndarray, target_index: np.ndarray, ks: Iterable[int] = (1, 5, 10)
) -> dict[str, float | int]:
    """HR@K, NDCG@K (for every K > 1; also K = 1) and MRR, plus ``n`` (rows).

    NDCG@K = 1 / log2(rank + 1) if rank <= K else 0: with one relevant item the ideal DCG is 1.
    K larger than C behaves as K = C (every rank is <= C). Keys: ``hr@K``, ``ndcg@K``, ``mrr``.
    With no rows every metric is 0.0.
    """
    r = ranks(scores, target_index)
    out: dict[str, float | int] = {}
    n = r.shape[0]
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"K must be >= 1, got {k}")
        k = int(k)
        inside = r <= k
        out[f"hr@{k}"] = float(inside.mean()) if n else 0.0
        out[f"ndcg@{k}"] = float(np.where(inside, 1.0 / np.log2(r + 1.0), 0.0).mean()) if n else 0.0
    out["mrr"] = float((1.0 / r).mean()) if n else 0.0
    out["n"] = int(n)
    return out


def topk_items(
    scores: np.ndarray,
    candidate_ids: np.ndarray,
    k: int,
    target_index: np.ndarray | None = None,
) -> np.ndarray:
    """Item ids of the k best-scored candidates per row, best first ([N, min(k, C)] int64).

    Ties keep the candidate order, except that when ``target_index`` is given the target is put
    after every candidate tying with it, so that ``topk[:, 0] == target`` agrees with
    ``ranks(...) == 1`` under the pessimistic rule above.
    """
    scores = np.asarray(scores, dtype=np.float64)
    candidate_ids = np.asarray(candidate_ids, dtype=np.int64)
    if scores.shape != candidate_ids.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and candidate_ids {candidate_ids.shape} must both be [N, C]")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; a NaN cannot be ranked")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n, c = scores.shape
    is_target = np.zeros((n, c), dtype=np.int64)
    if target_index is not None:
        _check_scores(scores, np.asarray(target_index))
        is_target[np.arange(n), np.asarray(target_index, dtype=np.int64)] = 1
    position = np.broadcast_to(np.arange(c), (n, c))
    # np.lexsort sorts by the last key first: score descending, then target last, then position.
    order = np.lexsort((position, is_target, -scores), axis=1)
    return np.take_along_axis(candidate_ids, order[:, : min(k, c)], axis=1)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so json.dump accepts the dict."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    return value


def prefix_keys(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``{"hr@1": v}`` -> ``{"<prefix>/hr@1": v}`` with JSON-safe values (builds metrics.json keys).

    ``prefix`` may itself contain slashes (``"test/rank"``); an empty prefix leaves keys unchanged.
    """
    prefix = prefix.strip("/")
    return {(f"{prefix}/{k}" if prefix else str(k)): _plain(v) for k, v in d.items()}
