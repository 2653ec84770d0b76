"""Popularity-bias metrics of recommended items, following RecBole's definitions.

Popularity is the item's interaction count in the *train* split. Averages over users hide that
random negatives make head items easy targets, hence also HR@1 per popularity band of the target.

Deviations from RecBole, both forced by our inputs:
* ``rec_items`` may hold -1 where a row has no valid prediction (an unmatched generation). Those
  entries are dropped everywhere: a row's averages use its valid entries only, rows with none are
  left out of the per-user averages, and Gini counts only valid entries.
* RecBole's tail set is built from the items seen in training; here ``train_counts`` covers the
  whole catalogue, so never-trained items (count 0) are candidates for the tail too (they sort
  first, which is where they belong).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BANDS: tuple[str, ...] = ("head", "mid", "tail")


def tail_items(train_counts: np.ndarray, tail_ratio: float) -> np.ndarray:
    """Boolean mask [n_items] of long-tail items, RecBole's rule.

    ``tail_ratio`` in (0, 1]: sort items by (train count, item id) ascending and take the first
    ``max(int(n_items * tail_ratio), 1)``. ``tail_ratio`` > 1: every item with count <= tail_ratio.
    """
    counts = np.asarray(train_counts)
    if tail_ratio <= 0:
        raise ValueError(f"tail_ratio must be > 0, got {tail_ratio}")
    if tail_ratio > 1:
        return counts <= tail_ratio
    order = np.lexsort((np.arange(counts.shape[0]), counts))
    mask = np.zeros(counts.shape[0], dtype=bool)
    mask[order[: max(int(counts.shape[0] * tail_ratio), 1)]] = True
    return mask


def gini_index(item_counts: np.ndarray) -> float:
    """RecBole's GiniIndex from per-item recommendation counts over the whole catalogue.

    sum_i (2i - n - 1) P_(i) / (n sum_i P_(i)), P sorted ascending, i = 1..n. 0 = every item
    recommended equally often; (n-1)/n = a single item gets everything. 0.0 when nothing is counted.
    """
    p = np.sort(np.asarray(item_counts, dtype=np.float64))
    n, total = p.shape[0], p.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * p) / (n * total))


def popularity_metrics(
    rec_items: np.ndarray, train_counts: np.ndarray, tail_ratio: float, k: int
) -> dict[str, float | int]:
    """AveragePopularity, TailPercentage, ItemCoverage and GiniIndex of the top-k lists.

    ``rec_items`` [N, >=1] item ids, best first, -1 = no prediction; only the first k columns are
    used (k larger than the width acts as the width). Keys: ``avg_pop@k``, ``tail_pct@k``,
    ``coverage@k``, ``gini@k`` and ``n_rec@k`` (rows with at least one valid item). When no row
    has a valid item, ``avg_pop@k`` and ``tail_pct@k`` are omitted (undefined, and a 0 would read
    as "no bias"); coverage and Gini are then 0.0.
    """
    rec = np.asarray(rec_items, dtype=np.int64)
    counts = np.asarray(train_counts, dtype=np.int64)
    if rec.ndim == 1:
        rec = rec[:, None]
    if rec.ndim != 2:
        raise ValueError(f"rec_items must be [N, k], got shape {rec.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_items = counts.shape[0]
    rec = rec[:, :k]
    valid = rec >= 0
    if (rec >= n_items).any():
        raise ValueError(f"rec_items contain ids >= n_items ({n_items})")
    safe = np.where(valid, rec, 0)
    per_row_n = valid.sum(axis=1)
    has = per_row_n > 0
    out: dict[str, float | int] = {}
    if has.any():
        pop = np.where(valid, counts[safe], 0).sum(axis=1)
        tail = np.where(valid, tail_items(counts, tail_ratio)[safe], False).sum(axis=1)
        out[f"avg_pop@{k}"] = float((pop[has] / per_row_n[has]).mean())
        out[f"tail_pct@{k}"] = float((tail[has] / per_row_n[has]).mean())
    rec_counts = np.bincount(rec[valid], minlength=n_items)
    out[f"coverage@{k}"] = float((rec_counts > 0).sum() / n_items) if n_items else 0.0
    out[f"gini@{k}"] = gini_index(rec_counts)
    out[f"n_rec@{k}"] = int(has.sum())
    return out


def hr_by_band(
    hits: np.ndarray, target_items: np.ndarray, item_band: np.ndarray | Sequence[str]
) -> dict[str, float | int]:
    """HR@1 per popularity band of the *target* item.

    ``item_band`` [n_items] holds "head" / "mid" / "tail" (from napo_lab.data.popularity). Returns
    ``<band>/n`` for every band (head, mid, tail first, then any other label present) and
    ``<band>/hr@1`` only for bands with at least one target, so the dict never holds a NaN.
    """
    hits = np.asarray(hits, dtype=bool)
    targets = np.asarray(target_items, dtype=np.int64)
    bands = np.asarray(item_band).astype(str)
    if hits.shape != targets.shape or hits.ndim != 1:
        raise ValueError(f"hits {hits.shape} and target_items {targets.shape} must both be [N]")
    target_band = bands[targets]
    labels = list(BANDS) + sorted(set(bands.tolist()) - set(BANDS))
    out: dict[str, float | int] = {}
    for band in labels:
        sel = target_band == band
        out[f"{band}/n"] = int(sel.sum())
        if sel.any():
            out[f"{band}/hr@1"] = float(hits[sel].mean())
    return out
