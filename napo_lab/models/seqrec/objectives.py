"""Losses of a sequential recommender over sampled negatives (the ``neg_sampler`` group).

All take the positive logit of each row ``pos`` [B], the logits of its negatives ``neg`` [B, W], which
negatives exist ``valid`` [B, W] (empty sampler slots are -1 items) and, for the adaptive samplers,
which of them the model picked ``keep`` [B, W]. Invalid entries contribute exactly nothing.

``bce`` is the public code's loss (apple/ml-negative-sampling ``model.py``): binary cross-entropy with
the positives and the negatives *averaged separately and summed*,

    L = mean_b softplus(-pos_b) + mean_{b,w valid} softplus(neg_bw),

and for ans/amns the entries outside the top-k stay in the second mean with their logit replaced by the
constant 0 (``adaptive_top_k`` scatters the kept values into zeros): each adds log 2 to the sum and no
gradient. Where the public code also averages over padding (positions without a target give label-0
entries with logit 0, and negatives are scored at padding positions too), napo_lab has no padding
positions: every row is one real (history -> target) position.

``bpr`` and ``sampled_softmax`` use the kept valid negatives only (a zero logit has no meaning there).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

LOSSES = ("bce", "bpr", "sampled_softmax")


def bce_loss(pos: Tensor, neg: Tensor, valid: Tensor, keep: Tensor | None = None) -> Tensor:
    """The public code's two-part BCE (see the module docstring)."""
    if keep is not None:
        neg = torch.where(keep, neg, torch.zeros_like(neg))  # constant 0: no gradient to a dropped entry
    pos_term = F.softplus(-pos.float()).mean()
    n_valid = valid.sum()
    neg_term = torch.where(valid, F.softplus(neg.float()), torch.zeros_like(neg, dtype=torch.float32)).sum()
    return pos_term + neg_term / n_valid.clamp(min=1)


def bpr_loss(pos: Tensor, neg: Tensor, valid: Tensor, keep: Tensor | None = None) -> Tensor:
    """-log sigmoid(pos - neg), averaged over the (kept) valid negatives."""
    use = valid if keep is None else valid & keep
    per = -F.logsigmoid(pos.float().unsqueeze(1) - neg.float())
    return torch.where(use, per, torch.zeros_like(per)).sum() / use.sum().clamp(min=1)


def sampled_softmax_loss(pos: Tensor, neg: Tensor, valid: Tensor, keep: Tensor | None = None) -> Tensor:
    """Cross-entropy of the positive against [positive, (kept) valid negatives] per row."""
    use = valid if keep is None else valid & keep
    logits = torch.cat([pos.float().unsqueeze(1), neg.float().masked_fill(~use, float("-inf"))], dim=1)
    return F.cross_entropy(logits, torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device))


def sampled_loss(name: str, pos: Tensor, neg: Tensor, valid: Tensor, keep: Tensor | None = None) -> Tensor:
    if name == "bce":
        return bce_loss(pos, neg, valid, keep)
    if name == "bpr":
        return bpr_loss(pos, neg, valid, keep)
    if name == "sampled_softmax":
        return sampled_softmax_loss(pos, neg, valid, keep)
    raise ValueError(f"loss {name!r} does not take sampled negatives; choose one of {list(LOSSES)}")
