"""SimPO: reference-free, length-normalised rewards with a target margin."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import LossInputs, check_finite, pairwise_mean


class SimPOLoss(RewardLoss):
    """``-log sigmoid(beta (s_w/|y_w| - s_l/|y_l|) - gamma)``; rewards are ``beta * s/|y|``.

    Reference-free by construction (``needs_reference`` is False): the average log-likelihood is
    the quantity generation actually ranks by, and dropping the reference saves its forward pass.

    Args:
        beta: reward scale (> 0).
        gamma: target reward margin (finite; SimPO uses gamma > 0).

    Multi-negative: mean of the pairwise losses over an example's valid negatives, then over
    examples (SimPO is defined on pairs).
    """

    length_normalise = True

    def __init__(self, beta: float = 2.0, gamma: float = 1.0) -> None:
        super().__init__(beta=beta, use_reference=False)
        self.gamma = check_finite("gamma", gamma)

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        per_pair = -F.logsigmoid(chosen[:, None] - rejected - self.gamma)
        return pairwise_mean(per_pair, neg_mask), {}
