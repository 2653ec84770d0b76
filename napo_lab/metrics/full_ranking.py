"""Full-catalogue ranking metrics: every item of the catalogue is a candidate.

Unlike :mod:`napo_lab.metrics.ranking` (20 sampled candidates, one target per row), a row here scores
all ``n_items`` items and may have several relevant items (the rating-based protocol holds out a set
of items per user). Definitions, per row with relevant set R (non-empty) and top-K list L:

    Recall@K = |R ∩ L| / |R|
    NDCG@K   = sum_{r in R, rank(r) <= K} 1 / log2(rank(r) + 1)  /  sum_{k=1}^{min(K, |R|)} 1 / log2(k + 1)

With one relevant item Recall@K is HR@K and NDCG@K = 1/log2(rank + 1), as in PreferDiff's evaluator.
Rows with an empty R are skipped (ITIPR's recall does the same; its NDCG counts such users as 0,
which we do not). Items in a row's ``exclude`` set (e.g. the training items of the user) are removed
from the ranking before ranks are taken; a relevant item is never excluded.

Ties are broken pessimistically, as in ranking.py: rank(r) = 1 + (#kept items scoring higher than r)
+ (#other kept items scoring the same as r). A constant scorer therefore never gets a free hit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

_CHUNK = 1024


def _as_lists(items: Sequence | np.ndarray | None, n: int) -> list[np.ndarray] | None:
    if items is None:
        return None
    if isinstance(items, np.ndarray) and items.ndim == 1 and items.dtype != object:
        return [np.asarray([int(v)], dtype=np.int64) for v in items]
    if isinstance(items, np.ndarray) and items.ndim == 2:
        return [row[row >= 0].astype(np.int64) for row in items]
    out = [np.asarray(list(v), dtype=np.int64).reshape(-1) for v in items]
    if len(out) != n:
        raise ValueError(f"expected {n} rows of item ids, got {len(out)}")
    return out


def relevant_ranks(
    scores: np.ndarray | torch.Tensor,
    relevant: Sequence | np.ndarray,
    exclude: Sequence | np.ndarray | None = None,
) -> list[np.ndarray]:
    """1-based pessimistic rank of every relevant item of every row ([N] arrays of int64).

    ``scores`` [N, n_items]; ``relevant``: [N] target ids, or N lists of ids; ``exclude``: N lists
    (or an [N, H] -1 padded array) of ids removed from the ranking (relevant ids are kept)."""
    scores_t = torch.as_tensor(scores)
    if scores_t.ndim != 2:
        raise ValueError(f"scores must be [N, n_items], got shape {tuple(scores_t.shape)}")
    n, n_items = scores_t.shape
    if torch.isnan(scores_t).any():
        raise ValueError("scores contain NaN; a NaN cannot be ranked")
    rel = _as_lists(relevant, n)
    exc = _as_lists(exclude, n)
    out: list[np.ndarray] = []
    for start in range(0, n, _CHUNK):
        block = scores_t[start : start + _CHUNK].double().clone()
        for r in range(block.shape[0]):
            i = start + r
            if rel[i].size and (rel[i].min() < 0 or rel[i].max() >= n_items):
                raise ValueError(f"row {i}: relevant ids outside [0, {n_items})")
            if exc is not None and exc[i].size:
                drop = np.setdiff1d(exc[i][(exc[i] >= 0) & (exc[i] < n_items)], rel[i])
                block[r, torch.from_numpy(drop)] = -torch.inf
        for r in range(block.shape[0]):
            i = start + r
            if not rel[i].size:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            row = block[r]
            kept = torch.isfinite(row) | (row == torch.inf)
            s = row[torch.from_numpy(rel[i])]
            higher = (row.unsqueeze(0) > s.unsqueeze(1)).sum(1)
            tied = ((row.unsqueeze(0) == s.unsqueeze(1)) & kept.unsqueeze(0)).sum(1) - 1
            out.append((1 + higher + tied).numpy().astype(np.int64))
    return out


def per_row_metrics(ranks: list[np.ndarray], ks: Iterable[int] = (5, 10, 20)) -> dict[str, np.ndarray]:
    """Per-row Recall@K / NDCG@K (NaN for rows without relevant items)."""
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"K must be >= 1, got {ks}")
    out: dict[str, np.ndarray] = {}
    for k in ks:
        recall = np.full(len(ranks), np.nan)
        ndcg = np.full(len(ranks), np.nan)
        for i, r in enumerate(ranks):
            if not r.size:
                continue
            inside = r <= k
            recall[i] = inside.sum() / r.size
            ideal = (1.0 / np.log2(np.arange(2, min(k, r.size) + 2))).sum()
            ndcg[i] = (1.0 / np.log2(r[inside] + 1.0)).sum() / ideal
        out[f"recall@{k}"], out[f"ndcg@{k}"] = recall, ndcg
    return out


def full_ranking_metrics(
    scores: np.ndarray | torch.Tensor,
    relevant: Sequence | np.ndarray,
    exclude: Sequence | np.ndarray | None = None,
    ks: Iterable[int] = (5, 10, 20),
) -> dict[str, float | int]:
    """Mean Recall@K and NDCG@K over rows with at least one relevant item, plus ``n`` (those rows)."""
    per_row = per_row_metrics(relevant_ranks(scores, relevant, exclude), ks)
    valid = ~np.isnan(next(iter(per_row.values()))) if per_row else np.zeros(0, bool)
    n = int(valid.sum())
    out: dict[str, float | int] = {k: float(v[valid].mean()) if n else 0.0 for k, v in per_row.items()}
    out["n"] = n
    return out
