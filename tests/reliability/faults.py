"""Fault-injection objectives for reliability tests (not part of the package)."""

from __future__ import annotations

import torch

from napo_lab.losses.sft import SFTLoss


class NaNAfterLoss(SFTLoss):
    """SFT whose loss turns NaN from the ``after``-th call on."""

    def __init__(self, after: int = 3):
        super().__init__()
        self.after, self.calls = int(after), 0

    def forward(self, inputs):
        out = super().forward(inputs)
        self.calls += 1
        if self.calls > self.after:
            out.loss = out.loss * torch.tensor(float("nan"))
        return out
