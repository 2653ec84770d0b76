"""DMPO-style multi-negative objective: the positive against the mean rejected reward."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import LossInputs, example_mean, masked_mean


class DMPOLoss(RewardLoss):
    """``-log sigmoid(beta h_w - mean_k beta h_lk)`` over the valid negatives k.

    Comparing with the *mean* negative (rather than S-DPO's softmax over negatives) weighs every
    negative equally, hard or easy. Examples without a valid negative are left out.

    Args:
        beta: inverse temperature (> 0).
        use_reference: ``h = s - s_ref`` (default) or ``h = s``.
    """

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        mean_rejected = masked_mean(rejected, neg_mask, dim=1)
        per_example = -F.logsigmoid(chosen - mean_rejected)
        return example_mean(per_example, neg_mask.any(dim=1)), {}
