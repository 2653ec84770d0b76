"""Full-catalogue accuracy and *interaction-volume cohorts*, as apple/ml-negative-sampling evaluates
(``util.obtain_cohorts``, ``util_eval.evaluate_cohorts``, ``make_scatter_plots.get_balance``).

Two popularity notions live in napo_lab; their names keep them apart:

* **item-share bands** (``band/...``, napo_lab.data.popularity): head = the top 20 % of *items* by train
  count, tail = the bottom 20 %, mid = the rest. Sizes are fixed shares of the catalogue.
* **interaction-volume cohorts** (``volume/...``, this module): items sorted by training frequency;
  head = the items holding the first third of all training *interactions*, mid = the next third, tail =
  the rest. A handful of items make the head; most of the catalogue is tail.

Rules, each as the public code has it:

* frequency = number of training users whose sequence holds the item (``freq[items] += 1`` adds once per
  user); ``UserItems.frequency`` computes it.
* cut: walk items by frequency descending, add each item's frequency to a running total *first*, then
  the item is head while the total is < 1/3 of all interactions, mid while < 2/3, else tail (so the item
  that crosses a third already belongs to the next cohort). Ties: item id ascending (the public code's
  ``np.argsort`` leaves tie order to the sort; stable id order makes it deterministic).
* rank: the target's rank among *all* catalogue items, history items included (the public code builds
  ``rated`` and never uses it). Ties are pessimistic (napo_lab's rule; the public code leaves them to
  numpy's sort).
* HR@K = rank <= K; NDCG@K = 1 / log2(rank + 1); per cohort of the target item, the sums are divided by
  ``count + 0.01`` (``denominator_eps``; the public code's smoothing, a cohort with no target reads 0).
* balance = 1 - Gini(head, mid, tail) where Gini adds 1e-7 to every value, shifts negatives to 0, sorts
  ascending and takes sum((2i - n - 1) x_i) / (n sum x). With three values it lies in [1/3, 1].
  The published ``data/all_results.csv`` computes it over the cohort **NDCG@10** values
  (``balance_ndcg@10``; its plots too); ``get_average_results.py`` recomputes it over HR@10
  (``balance_hr@10``). Both are reported, named.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

COHORTS: tuple[str, ...] = ("head", "mid", "tail")
DENOMINATOR_EPS = 0.01
GINI_EPS = 1e-7


def volume_cohorts(frequency: np.ndarray) -> np.ndarray:
    """Cohort of every item ("head" / "mid" / "tail", numpy str array indexed by item id)."""
    freq = np.asarray(frequency, dtype=np.float64)
    total = freq.sum()
    order = np.lexsort((np.arange(freq.shape[0]), -freq))  # frequency descending, then id ascending
    running = np.cumsum(freq[order])
    label = np.where(running < total / 3, 0, np.where(running < 2 * total / 3, 1, 2))
    out = np.empty(freq.shape[0], dtype="<U4")
    out[order] = np.asarray(COHORTS)[label]
    return out


def cohort_sizes(cohorts: np.ndarray, frequency: np.ndarray) -> dict[str, int | float]:
    """Items per cohort and the share of training interactions each holds (for the manifest / report)."""
    freq = np.asarray(frequency, dtype=np.float64)
    total = max(freq.sum(), 1.0)
    out: dict[str, int | float] = {}
    for c in COHORTS:
        sel = cohorts == c
        out[f"{c}/items"] = int(sel.sum())
        out[f"{c}/interaction_share"] = float(freq[sel].sum() / total)
    return out


def gini(values: Sequence[float]) -> float:
    """The public code's Gini (make_scatter_plots.gini): +1e-7, shift negatives, sort, closed form."""
    a = np.asarray(values, dtype=np.float64).flatten().copy()
    if a.min() < 0:
        a -= a.min()
    a = np.sort(a + GINI_EPS)
    n = a.shape[0]
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * a) / (n * a.sum()))


def balance(values: Sequence[float]) -> float:
    """1 - Gini over the three cohort values (1 = equal accuracy on head, mid and tail)."""
    return 1.0 - gini(values)


@torch.no_grad()
def full_catalogue_ranks(scores_fn, history: np.ndarray, targets: np.ndarray, batch_size: int = 1024,
                         exclude_history: bool = False) -> np.ndarray:
    """1-based rank of each target among all items ([N] int64), pessimistic ties.

    ``scores_fn(history [b, H] LongTensor) -> [b, n_items]`` logits (e.g. ``SeqRecModel.scores``).
    ``exclude_history=True`` scores history items -inf first (a common variant; the public code
    does not)."""
    out = []
    for start in range(0, len(targets), batch_size):
        h = torch.as_tensor(history[start:start + batch_size], dtype=torch.long)
        t = torch.as_tensor(targets[start:start + batch_size], dtype=torch.long)
        s = scores_fn(h).double().cpu()
        if exclude_history:
            rows, cols = (h >= 0).nonzero(as_tuple=True)
            keep_target = h[rows, cols] != t[rows]
            s[rows[keep_target], h[rows, cols][keep_target]] = float("-inf")
        target_score = s.gather(1, t.unsqueeze(1))
        ahead = (s > target_score).sum(1) + (s == target_score).sum(1) - 1
        out.append((1 + ahead).numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def full_catalogue_metrics(ranks: np.ndarray, targets: np.ndarray, cohorts: np.ndarray, k: int = 10,
                           denominator_eps: float = DENOMINATOR_EPS) -> dict[str, float]:
    """``hr@k``, ``ndcg@k`` over all rows and, per interaction-volume cohort of the target,
    ``volume/<cohort>/hr@k``, ``volume/<cohort>/ndcg@k``, ``volume/<cohort>/n``, plus
    ``volume/balance_ndcg@k`` and ``volume/balance_hr@k``."""
    ranks = np.asarray(ranks, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    if ranks.shape != targets.shape or ranks.ndim != 1:
        raise ValueError(f"ranks {ranks.shape} and targets {targets.shape} must both be [N]")
    hit = ranks <= k
    gain = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    n = max(len(ranks), 1)
    out: dict[str, float] = {f"hr@{k}": float(hit.sum() / n), f"ndcg@{k}": float(gain.sum() / n),
                             "n": float(len(ranks))}
    target_cohort = np.asarray(cohorts)[targets] if len(targets) else np.zeros(0, dtype="<U4")
    hrs, ndcgs = [], []
    for c in COHORTS:
        sel = target_cohort == c
        denom = sel.sum() + float(denominator_eps)
        hr_c = float(hit[sel].sum() / denom) if denom > 0 else 0.0
        nd_c = float(gain[sel].sum() / denom) if denom > 0 else 0.0
        out[f"volume/{c}/hr@{k}"], out[f"volume/{c}/ndcg@{k}"] = hr_c, nd_c
        out[f"volume/{c}/n"] = float(sel.sum())
        hrs.append(hr_c)
        ndcgs.append(nd_c)
    out[f"volume/balance_ndcg@{k}"] = balance(ndcgs)
    out[f"volume/balance_hr@{k}"] = balance(hrs)
    return out
