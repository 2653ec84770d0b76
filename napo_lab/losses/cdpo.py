"""Conservative DPO (label smoothing): the preference label is flipped with probability ``eps``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import LossInputs, check_range, pairwise_mean


def cdpo_per_pair(margin: Tensor, eps: Tensor | float) -> Tensor:
    """``-(1-eps) log sigmoid(m) - eps log sigmoid(-m)`` with ``m = beta (h_w - h_l)``.

    Both terms use ``logsigmoid`` (stable for |m| in the thousands). ``eps`` may be a float or a
    tensor broadcastable to ``margin`` (RosePO's per-negative smoothing).
    """
    return -(1.0 - eps) * F.logsigmoid(margin) - eps * F.logsigmoid(-margin)


class CDPOLoss(RewardLoss):
    """cDPO / label-smoothed DPO.

    Args:
        beta: inverse temperature (> 0).
        eps: label-smoothing probability in [0, 0.5) (0 is DPO; 0.5 would make the loss blind to the
            preference, so it is excluded).
        use_reference: as in :class:`~napo_lab.losses.dpo.DPOLoss`.
        label_smoothing: TRL's name for ``eps``; when given it wins (``loss.objective.label_smoothing=0.2``).

    K > 1: mean over valid negatives, then over examples (as DPO).
    """

    def __init__(self, beta: float = 1.0, eps: float = 0.1, use_reference: bool = True,
                 label_smoothing: float | None = None) -> None:
        super().__init__(beta=beta, use_reference=use_reference)
        if label_smoothing is not None:  # TRL's name for eps (DPOConfig.label_smoothing)
            eps = label_smoothing
        self.eps = check_range("eps", eps, 0.0, 0.5, low_open=False, high_open=True)

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        per_pair = cdpo_per_pair(chosen[:, None] - rejected, self.eps)
        return pairwise_mean(per_pair, neg_mask), {}
