"""PreferDiff's objective: a diffusion reconstruction loss with a DPO-style preference term.

For a batch of B rows with target embeddings e_i, the negative of row i is the centroid of the other
rows' targets, c_i = mean_{j != i} e_j (in-batch negatives, averaged into one vector; a duplicate of
the row's own target in the batch stays in the mean, as in the public code). Positive and centroid are
noised at the same time t_i (with independent noise) and denoised under the same condition h_i, giving
predictions p_i and q_i. With the cosine error err(a, b) = (cos(a, b) - 1)^2:

    batch (default, the public code):   l_pos = mean_i err(e_i, p_i),  l_neg = mean_i err(c_i, q_i)
                                         L = -(1 - lam) log sigmoid(-gamma (l_pos - l_neg)) + lam l_pos
    per_example:                         L = mean_i [-(1 - lam) log sigmoid(-gamma (err(e_i,p_i) - err(c_i,q_i)))
                                                     + lam err(e_i, p_i)]

lam = 1 is the plain generative (reconstruction) loss. The public code adds 1e-8 inside the
log-sigmoid; so do we (it is numerically irrelevant).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.nn import functional as F

LOGSIGMOID_EPS = 1e-8


def in_batch_centroids(target_emb: Tensor) -> Tensor:
    """[B, D] -> [B, D]: row i is the mean of the other B - 1 rows (needs B >= 2)."""
    b = target_emb.shape[0]
    if b < 2:
        raise ValueError("in-batch negatives need a batch of at least 2 rows")
    return (target_emb.sum(0, keepdim=True) - target_emb) / (b - 1)


def reconstruction_error(target: Tensor, pred: Tensor, kind: str = "cosine") -> Tensor:
    """Per-row error [B]: ``cosine`` = (cos(target, pred) - 1)^2, ``l2`` = mean squared error over D."""
    if kind == "cosine":
        cos = (F.normalize(target, dim=-1) * F.normalize(pred, dim=-1)).sum(-1)
        return (cos - 1.0) ** 2
    if kind == "l2":
        return ((target - pred) ** 2).mean(-1)
    raise ValueError(f"unknown reconstruction error {kind!r}; choose cosine or l2")


@dataclass
class PreferDiffLossOutput:
    loss: Tensor  # scalar
    l_pos: Tensor  # scalar: mean reconstruction error of the positives
    l_neg: Tensor  # scalar: mean reconstruction error of the centroids
    accuracy: Tensor  # scalar: share of rows whose positive is reconstructed better than its centroid


def preferdiff_loss(
    pos_target: Tensor,
    pos_pred: Tensor,
    neg_target: Tensor,
    neg_pred: Tensor,
    *,
    gamma: float = 5.0,
    lam: float = 0.5,
    reduction: str = "batch",
    error: str = "cosine",
) -> PreferDiffLossOutput:
    """The loss above from targets and denoiser predictions, all [B, D]."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    err_pos = reconstruction_error(pos_target.float(), pos_pred.float(), error)
    err_neg = reconstruction_error(neg_target.float(), neg_pred.float(), error)
    if reduction == "batch":
        l_pos, l_neg = err_pos.mean(), err_neg.mean()
        pref = -F.logsigmoid(-gamma * (l_pos - l_neg) + LOGSIGMOID_EPS)
        loss = (1.0 - lam) * pref + lam * l_pos
    elif reduction == "per_example":
        pref = -F.logsigmoid(-gamma * (err_pos - err_neg) + LOGSIGMOID_EPS)
        loss = ((1.0 - lam) * pref + lam * err_pos).mean()
        l_pos, l_neg = err_pos.mean(), err_neg.mean()
    else:
        raise ValueError(f"unknown reduction {reduction!r}; choose batch or per_example")
    return PreferDiffLossOutput(loss, l_pos.detach(), l_neg.detach(), (err_pos < err_neg).float().mean())
