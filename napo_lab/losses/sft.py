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
    """Token-mean next-token cross-entropy on the response, optionally on the history titles too:

        loss = -(sum_b s[b,0] + w * sum_b h[b]) / (sum_b |y_b| + w * sum_b |hist_b|)

    where ``s[b,0]`` is the answer's summed log-prob (title + EOS), ``h[b]`` the summed log-prob of the
    history-title tokens inside prompt b and ``w = history_weight``. With ``w = 0`` (S-DPO's SFT,
    completion-only) this is ``-sum_b s[b,0] / sum_b |y_b|``.

    Why the history: a prompt's history lists the user's items in order, so each title after the
    first is a "next item" of the same user, the very thing the answer teaches. Answer-only SFT learns
    one next item per example; with ``w = 1`` an example with a 10-item history adds up to 9 more
    (docs/learning.md measures what this does). Summing tokens over the batch before dividing is the
    usual causal-LM loss: every supervised token weighs the same.

    Negative columns, if the batch has any, are ignored by the loss and only feed the shared reward
    metrics (rewards = ``s``, beta = 1), so an SFT run logs the same metric names as every preference run.
    """

    needs_reference = False
    needs_sequential_model = False
    needs_cross_logps = False
    needs_negatives = False

    def __init__(self, history_weight: float = 0.0):
        super().__init__()
        w = float(history_weight)
        if not (w >= 0.0 and w < float("inf")):
            raise ValueError(f"history_weight={history_weight} must be in [0, inf)")
        self.history_weight = w

    @property
    def needs_history_logps(self) -> bool:
        return self.history_weight > 0.0

    def forward(self, inputs: LossInputs) -> LossOutput:
        validate_shapes(inputs)
        mask = valid_mask(inputs)
        s = sequence_logps(inputs, use_reference=False)
        tokens = inputs.lengths[:, 0].to(s.dtype).sum()
        answer_nll = -s[:, 0].sum()
        total, count = answer_nll, tokens
        metrics = {}
        if self.needs_history_logps:
            if inputs.history_logps is None or inputs.history_tokens is None:
                raise ValueError("SFTLoss(history_weight > 0) needs history_logps and history_tokens")
            hist_tokens = inputs.history_tokens.to(s.dtype).sum()
            hist_nll = -inputs.history_logps.to(s.dtype).sum()
            total = total + self.history_weight * hist_nll
            count = count + self.history_weight * hist_tokens
            metrics["sft/history_nll"] = (hist_nll / hist_tokens.clamp_min(1.0)).detach()
        loss = total / count.clamp_min(1.0)
        chosen, rejected, neg_mask = split(s, mask)
        metrics.update(reward_metrics(chosen, rejected, neg_mask))
        metrics["sft/tokens"] = tokens.detach()
        metrics["sft/answer_nll"] = (answer_nll / tokens.clamp_min(1.0)).detach()
        return LossOutput(loss=loss, metrics=metrics)


__all__ = ["SFTLoss"]
