"""NAPO's dynamic margin with an EMA of the negatives' confidence.

``M_batch`` = mean sequential-model score (logit) of the negatives in use; the EMA follows
``M_t = m * M_{t-1} + (1 - m) * M_batch`` from ``M_0 = 0`` and is updated BEFORE the margin is
computed, so step t uses the EMA that already includes batch t:
``gamma_t = gamma0 * (1 - alpha * (level - M_t))``, where ``level`` is ``M_batch`` (granularity
``batch``, the official one), the user's mean confidence (``user``) or each negative's own
confidence (``negative``). A batch more confident than usual (higher scores: the negatives look
like things the user would like, possibly false negatives) gets a smaller margin.

The EMA is a registered buffer (in ``state_dict``, so checkpoints resume it), updated only in
training mode, and with torch.distributed initialised (world size > 1) ``M_batch`` is the mean over
all ranks' negatives (sum and count all-reduced), so every rank holds the same EMA.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from napo_lab.losses.base import masked_mean
from napo_lab.losses.napo_sharing import world

GRANULARITIES = ("batch", "user", "negative")


class DynamicMargin(nn.Module):
    def __init__(self, gamma0: float, alpha: float, momentum: float, granularity: str) -> None:
        super().__init__()
        self.gamma0 = gamma0
        self.alpha = alpha
        self.momentum = momentum
        self.granularity = granularity
        self.register_buffer("ema", torch.zeros((), dtype=torch.float32))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def dynamic(self) -> bool:
        return self.alpha != 0.0 and self.gamma0 != 0.0

    @torch.no_grad()
    def forward(
        self, confidence: Tensor | None, cand_mask: Tensor, sync: bool
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Margin broadcastable to ``[B, M]`` candidates and the logged stats (no gradient)."""
        device = cand_mask.device
        if confidence is None:
            if self.dynamic:
                raise ValueError(
                    "NAPO dynamic margin (alpha != 0 and gamma0 != 0) needs sequential-model scores"
                )
            zero = torch.zeros((), device=device)
            return torch.full((), self.gamma0, device=device), {
                "m_batch": zero,
                "ema": self.ema.detach().clone(),
            }
        conf = confidence.detach().float()
        # A negative without an oracle value (unknown item: NaN score) does not enter the statistics.
        cand_mask = cand_mask & torch.isfinite(conf)
        total = torch.where(cand_mask, conf, torch.zeros((), device=device)).sum()
        count = cand_mask.sum().float()
        if sync and self.training and world() is not None:
            import torch.distributed as dist

            both = torch.stack([total, count])
            dist.all_reduce(both)
            total, count = both[0], both[1]
        m_batch = torch.where(count > 0, total / count.clamp_min(1.0), self.ema.float())
        if not self.dynamic:
            return torch.full((), self.gamma0, device=device), {
                "m_batch": m_batch,
                "ema": self.ema.detach().clone(),
            }
        if self.training and bool(count > 0):
            self.ema.copy_(self.momentum * self.ema + (1.0 - self.momentum) * m_batch)
            self.steps += 1
        ema = self.ema.float()
        if self.granularity == "batch":
            level = m_batch
        elif self.granularity == "user":
            per_user = masked_mean(conf, cand_mask, dim=1)
            level = torch.where(cand_mask.any(dim=1), per_user, m_batch)[:, None]
        else:
            level = torch.where(cand_mask, conf, m_batch)
        gamma = self.gamma0 * (1.0 - self.alpha * (level - ema))
        return gamma, {"m_batch": m_batch, "ema": ema.clone()}
