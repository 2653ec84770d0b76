"""S-DPO: softmax DPO over K negatives, in logsumexp form."""

from __future__ import annotations

from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import LossInputs, example_mean, lse_with_zero


def sdpo_per_example(
    chosen: Tensor, rejected: Tensor, neg_mask: Tensor, margin: Tensor | float = 0.0
) -> Tensor:
    """``logsumexp([0, margin_k + r_lk - r_w for valid k])`` per example (rewards carry beta).

    Algebraically ``-log sigmoid(-log sum_k exp(r_lk - r_w))``; the published code evaluates that
    with exp-then-log and overflows to inf once a gap reaches ~90 in fp32. The logsumexp form is
    finite for any finite input and equals DPO at K = 1 (``log(1 + e^{-x}) = -log sigmoid(x)``).
    """
    return lse_with_zero(margin + rejected - chosen[:, None], neg_mask)


class SDPOLoss(RewardLoss):
    """Softmax-DPO (S-DPO) for recommendation with multiple negatives.

    Args:
        beta: inverse temperature (> 0); the paper uses 1.
        use_reference: ``h = s - s_ref`` (paper) or ``h = s`` (reference-free; equal to NAPO with no
            sharing and no margin).
    """

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        per_example = sdpo_per_example(chosen, rejected, neg_mask)
        return example_mean(per_example, neg_mask.any(dim=1)), {}
