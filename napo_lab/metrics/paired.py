"""Per-user values of the headline metrics from a predictions table, and paired comparisons of two
methods on the same rows (napo_lab.metrics.stats does the bootstrap).

A predictions table (``predictions_<role>.parquet``) keeps, per evaluated row, the candidates, the
scores and the answer, so every per-user value below is recomputed from it with the same rules as
the aggregate metrics (napo_lab.metrics.table): its mean over rows IS the run's metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from napo_lab.metrics.ranking import ranks
from napo_lab.metrics.stats import PairedDiff, paired_bootstrap

#: Metrics compared user by user (the keys without their role prefix).
PAIRED_METRICS = ("hr@1", "rank/hr@1", "rank/ndcg@10", "rank/mrr")


def chance_levels(n_candidates: int) -> dict[str, float]:
    """Expected value of each paired metric for a uniformly random ranking of C candidates (the target
    equally likely at every rank): HR@1 = 1/C, MRR = (1/C) sum_r 1/r, NDCG@10 = (1/C) sum_{r<=10}
    1/log2(r+1). Generation's HR@1 is 1/C for a model that always names one random candidate."""
    c = int(n_candidates)
    r = np.arange(1, c + 1, dtype=np.float64)
    return {"hr@1": 1.0 / c, "rank/hr@1": 1.0 / c, "rank/mrr": float((1.0 / r).mean()),
            "rank/ndcg@10": float(np.where(r <= 10, 1.0 / np.log2(r + 1.0), 0.0).mean())}


def _target_ranks(pred: pd.DataFrame, column: str) -> np.ndarray | None:
    if column not in pred or len(pred) == 0:
        return None
    scores = [np.asarray(s if s is not None else [], dtype=np.float64) for s in pred[column]]
    cands = [np.asarray(c, dtype=np.int64) for c in pred["candidates"]]
    if any(s.shape != c.shape or s.size == 0 for s, c in zip(scores, cands)):
        return None
    cand = np.stack(cands)
    return ranks(np.stack(scores), np.argmax(cand == pred["target"].to_numpy()[:, None], axis=1))


def per_user(pred: pd.DataFrame, metric: str) -> np.ndarray | None:
    """[N] values of ``metric`` (a key of PAIRED_METRICS, optionally ``rank_norm/...``) per row, or
    None when the table does not have what it needs (e.g. a generation-only run has no scores)."""
    if metric == "hr@1":
        if "generated" not in pred or not any(isinstance(t, str) and t for t in pred["generated"]):
            return None
        return (pred["matched"].to_numpy() == pred["target"].to_numpy()).astype(np.float64)
    family, _, leaf = metric.partition("/")
    column = {"rank": "scores", "rank_norm": "scores_norm"}.get(family)
    r = _target_ranks(pred, column) if column else None
    if r is None:
        return None
    if leaf == "mrr":
        return 1.0 / r
    name, _, k = leaf.partition("@")
    if name == "hr":
        return (r <= int(k)).astype(np.float64)
    if name == "ndcg":
        return np.where(r <= int(k), 1.0 / np.log2(r + 1.0), 0.0)
    raise ValueError(f"no per-user rule for metric {metric!r}")


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Two predictions tables over the same rows in the same order (user, target and candidates)."""
    if len(a) != len(b):
        return False
    return (a["user"].to_numpy() == b["user"].to_numpy()).all() and \
        (a["target"].to_numpy() == b["target"].to_numpy()).all() and \
        all(list(x) == list(y) for x, y in zip(a["candidates"], b["candidates"]))


def compare(method: Sequence[pd.DataFrame], baseline: Sequence[pd.DataFrame], metric: str,
            paired_seeds: bool, n_boot: int = 10_000, seed: int = 0) -> PairedDiff | None:
    """Paired bootstrap of ``metric`` for a method's runs (one table per seed) against a baseline's.

    ``paired_seeds``: seed s of the method is paired with seed s of the baseline (same seed list, same
    order); otherwise the baseline's per-user values are averaged over its runs (e.g. a deterministic
    zero-shot row, or a baseline with other seeds). None when a table lacks the metric or the rows of
    the tables differ (they are not comparable user by user)."""
    tables = list(method) + list(baseline)
    if not method or not baseline or not all(same_rows(tables[0], t) for t in tables[1:]):
        return None
    a = [per_user(t, metric) for t in method]
    b = [per_user(t, metric) for t in baseline]
    if any(v is None for v in a + b):
        return None
    a_m, b_m = np.stack(a), np.stack(b)
    if not paired_seeds:
        b_m = b_m.mean(axis=0, keepdims=True)
    return paired_bootstrap(a_m, b_m, n_boot=n_boot, seed=seed)
