"""IPO: squared loss on the length-averaged log-ratio margin."""

from __future__ import annotations

from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import LossInputs, pairwise_mean


class IPOLoss(RewardLoss):
    """Identity Preference Optimisation: ``(D - 1/(2 beta))^2`` with
    ``D = (s_w - s_ref,w)/|y_w| - (s_l - s_ref,l)/|y_l|`` (length-averaged log-probs).

    Unlike DPO the target margin is finite, so IPO does not push the margin to infinity on
    deterministic preferences. The regression target ``1/(2 beta)`` is why beta appears there and
    not as a multiplier. Reported rewards are ``beta * D``-style: ``beta * h/|y|`` per completion.

    Args:
        beta: regularisation strength (> 0); target margin ``1/(2 beta)``.
        use_reference: with False, ``h = s/|y|`` (reference-free IPO).

    K > 1: mean over valid negatives, then over examples.
    """

    length_normalise = True

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        margin = (chosen[:, None] - rejected) / self.beta  # back to D: rewards carry a beta factor
        per_pair = (margin - 1.0 / (2.0 * self.beta)) ** 2
        return pairwise_mean(per_pair, neg_mask), {}
