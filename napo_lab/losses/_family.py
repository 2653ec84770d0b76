"""Shared skeleton of the DPO family: ``beta``, an optional reference, and reward metrics."""

from __future__ import annotations

from torch import Tensor

from napo_lab.losses.base import (
    LossInputs,
    LossOutput,
    PreferenceLoss,
    check_positive,
    reward_metrics,
    sequence_logps,
    split,
    valid_mask,
    validate_shapes,
)


class RewardLoss(PreferenceLoss):
    """Base of objectives written on implicit rewards ``r = beta * h`` (``beta * s`` when
    ``use_reference`` is False). Subclasses implement :meth:`objective` on the split rewards."""

    length_normalise: bool = False

    def __init__(self, beta: float = 1.0, use_reference: bool = True) -> None:
        super().__init__()
        self.beta = check_positive("beta", beta)
        self.use_reference = bool(use_reference)
        # Instance attribute: the LightningModule skips the reference pass when False.
        self.needs_reference = self.use_reference

    def rewards(self, inputs: LossInputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns chosen ``[B]``, rejected ``[B, K]``, negative mask ``[B, K]``, full mask."""
        validate_shapes(inputs)
        mask = valid_mask(inputs)
        h = sequence_logps(inputs, use_reference=self.use_reference, length_normalise=self.length_normalise)
        chosen, rejected, neg_mask = split(self.beta * h, mask)
        return chosen, rejected, neg_mask, mask

    def objective(
        self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs
    ) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, inputs: LossInputs) -> LossOutput:
        chosen, rejected, neg_mask, _ = self.rewards(inputs)
        loss, extras = self.objective(chosen, rejected, neg_mask, inputs)
        metrics = reward_metrics(chosen, rejected, neg_mask)
        metrics.update({k: v.detach() for k, v in extras.items()})
        return LossOutput(loss=loss, metrics=metrics)
