"""Supervised fine-tuning on the positive completion only (the stage every preference run starts from)."""

from __future__ import annotations

from napo_lab.losses.base import (
    LossInputs,
    LossOutput,
    PreferenceLoss,
    reward_metrics,
    sequence_logps,
    split,
    valid_mask,
    validate_shapes,
)


class SFTLoss(PreferenceLoss):
    """Token-mean next-token cross-entropy on the response: ``-sum_b s[b,0] / sum_b |y_b|``.

    Summing tokens over the batch before dividing (rather than averaging per-example means) is the
    usual causal-LM loss: every response token weighs the same. Negative columns, if the batch has
    any, are ignored by the loss and only feed the shared reward metrics (rewards = ``s``, beta = 1),
    so an SFT run logs the same metric names as every preference run.
    """

    needs_reference = False
    needs_sequential_model = False
    needs_cross_logps = False
    needs_negatives = False

    def forward(self, inputs: LossInputs) -> LossOutput:
        validate_shapes(inputs)
        mask = valid_mask(inputs)
        s = sequence_logps(inputs, use_reference=False)
        tokens = inputs.lengths[:, 0].to(s.dtype).sum().clamp_min(1.0)
        loss = -s[:, 0].sum() / tokens
        chosen, rejected, neg_mask = split(s, mask)
        metrics = reward_metrics(chosen, rejected, neg_mask)
        metrics["sft/tokens"] = tokens.detach()
        return LossOutput(loss=loss, metrics=metrics)


__all__ = ["SFTLoss"]
