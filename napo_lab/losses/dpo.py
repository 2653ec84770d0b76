"""DPO: ``-log sigmoid(beta (h_w - h_l))``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import LossInputs, pairwise_mean


class DPOLoss(RewardLoss):
    """Direct Preference Optimisation.

    Args:
        beta: inverse temperature (> 0).
        use_reference: ``h = s - s_ref`` (standard DPO) or ``h = s`` (reference-free variant).

    With K > 1 negatives the loss is the mean of the pairwise DPO losses over an example's *valid*
    negatives, then the mean over examples (each example weighs the same). At K = 1 that is exactly
    DPO with the one negative; the config ships K = 1.
    """

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        per_pair = -F.logsigmoid(chosen[:, None] - rejected)
        return pairwise_mean(per_pair, neg_mask), {}
