"""Evaluate a sequential model by full-catalogue ranking and on the 20 candidates, from one scoring.

Every item of the catalogue is scored once per row (``model.scores``); the candidate protocol then
gathers the row's 20 candidates from the same scores. For a model that samples (PreferDiff) both
protocols therefore read the same sampled x0_hat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from napo_lab.eval.full_ranking import per_row_metrics, relevant_ranks
from napo_lab.eval.metrics import ranking_metrics
from napo_lab.models.seqrec.base import SeqRecModel
from napo_lab.models.seqrec.train import split_arrays


@torch.no_grad()
def all_scores(model: SeqRecModel, history: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """float32 [N, n_items] scores of every item (eval mode; the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    device = model.item_emb.weight.device
    parts = [model.scores(torch.as_tensor(history[s : s + batch_size], device=device)).float().cpu()
             for s in range(0, len(history), batch_size)]
    model.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.n_items), np.float32)


def full_metrics(
    scores: np.ndarray, targets: np.ndarray, history: np.ndarray | None, ks: tuple[int, ...] = (5, 10)
) -> tuple[dict[str, float], dict[str, np.ndarray], np.ndarray]:
    """Recall@K / NDCG@K with one target per row; ``history`` (-1 padded ids) is masked when given.
    Returns (mean metrics, per-row metrics, target ranks [N])."""
    ranks = relevant_ranks(scores, targets, history)
    rows = per_row_metrics(ranks, ks)
    means = {k: float(np.nanmean(v)) if len(v) else 0.0 for k, v in rows.items()}
    return means, rows, np.asarray([r[0] for r in ranks], dtype=np.int64)


def evaluate_split_full(
    model: SeqRecModel,
    df: pd.DataFrame,
    ks_full: tuple[int, ...] = (5, 10),
    ks_cand: tuple[int, ...] = (1, 5, 10),
    mask_history: bool = False,
    batch_size: int = 512,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Score an evaluation split. Metrics: ``full/recall@K``, ``full/ndcg@K`` (all items ranked;
    with ``mask_history`` the row's history items are removed first, the target never is) and the
    sampled ``rank/*`` metrics over the row's candidates (from the same scores). Arrays: history,
    target, user, candidates, target_index, ``scores`` [N, C] candidate scores, ``target_rank`` [N]
    full-catalogue rank of the target."""
    arrays = split_arrays(df, model.max_len)
    scores = all_scores(model, arrays["history"], batch_size)
    full, per_row, target_rank = full_metrics(
        scores, arrays["target"], arrays["history"] if mask_history else None, ks_full)
    metrics = {f"full/{k}": v for k, v in full.items()}
    if "candidates" in arrays:
        arrays["scores"] = np.take_along_axis(scores, arrays["candidates"], axis=1).astype(np.float64)
        cand = ranking_metrics(arrays["scores"], arrays["target_index"], ks=ks_cand)
        metrics |= {f"rank/{k}": float(v) for k, v in cand.items() if k != "n"}
    metrics["n"] = float(len(arrays["target"]))
    arrays["target_rank"] = target_rank
    arrays |= {f"full_{k}": v for k, v in per_row.items()}
    return arrays, metrics
