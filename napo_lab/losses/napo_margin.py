"""NAPO's dynamic margin with an EMA of the negatives' confidence.

``M_batch`` = mean sequential-model score (logit) of the negatives in use; the EMA follows
``M_t = m * M_{t-1} + (1 - m) * M_batch`` from ``M_0 = 0`` and is updated BEFORE the margin is
computed, so step t uses the EMA that already includes batch t:
``gamma_t = gamma0 * (1 - alpha * (level - M_t))``, where ``level`` is ``M_batch`` (granularity
``batch``, the official one), the user's mean confidence (``user``) or each negative's own
confidence (``negative``). A batch more confident than usual (higher scores: the negatives look
like things the user would like, possibly false negatives) gets a smaller margin.

Options (docs/napo.md has the table of official vs default):

* ``bias_correction``: use ``M_t / (1 - m^t)`` (t = number of updates) instead of ``M_t``, as Adam
  corrects its moments. The raw EMA starts at 0, so in the first steps ``M_batch - M_t`` is about
  ``M_batch`` and gamma is far from gamma0 (negative when ``alpha * M_batch > 1``); the corrected
  EMA is an unbiased running mean from step 1 on (at t = 1 it equals ``M_batch``, so gamma = gamma0).
* ``update_in_eval``: also update the EMA when the module is in eval mode (the official code does,
  in its evaluation passes). Off: eval mode reads the stored EMA and leaves it alone.
* ``distributed``: with torch.distributed (world size > 1) and an EMA update, ``global`` takes
  ``M_batch`` over all ranks' pairs (sum and count all-reduced) for both the margin and the EMA, so
  every rank uses the same gamma; ``local`` is the official behaviour: each rank's gamma uses its
  own local ``M_batch``, and the EMA moves by the mean over ranks of the local ``M_batch`` (the
  official code updates a per-rank EMA and then averages the EMAs across ranks, which is the same
  thing as every rank starts from the same EMA). Either way every rank holds the same EMA.

The EMA and the update count are registered buffers (in ``state_dict``, so checkpoints resume them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from napo_lab.losses.base import masked_mean
from napo_lab.losses.napo_sharing import world

GRANULARITIES = ("batch", "user", "negative")
DISTRIBUTED_MODES = ("global", "local")


class DynamicMargin(nn.Module):
    def __init__(
        self,
        gamma0: float,
        alpha: float,
        momentum: float,
        granularity: str,
        bias_correction: bool = False,
        update_in_eval: bool = False,
        distributed: str = "global",
    ) -> None:
        super().__init__()
        self.gamma0 = gamma0
        self.alpha = alpha
        self.momentum = momentum
        self.granularity = granularity
        self.bias_correction = bool(bias_correction)
        self.update_in_eval = bool(update_in_eval)
        self.distributed = distributed
        self.register_buffer("ema", torch.zeros((), dtype=torch.float32))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def dynamic(self) -> bool:
        return self.alpha != 0.0 and self.gamma0 != 0.0

    def updates(self) -> bool:
        """Whether a call in the current mode moves the EMA."""
        return self.training or self.update_in_eval

    def reference(self, fallback: Tensor) -> Tensor:
        """The EMA the margin compares with: raw, or bias-corrected (``fallback`` before any update)."""
        ema = self.ema.float()
        if not self.bias_correction:
            return ema
        steps = int(self.steps)
        if steps == 0:
            return fallback.float()
        return ema / (1.0 - self.momentum**steps)

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
                "ema": self.ema.detach().float().clone(),
            }
        conf = confidence.detach().float()
        # A negative without an oracle value (unknown item: NaN score) does not enter the statistics.
        cand_mask = cand_mask & torch.isfinite(conf)
        total = torch.where(cand_mask, conf, torch.zeros((), device=device)).sum()
        count = cand_mask.sum().float()
        ema_prev = self.ema.float()
        local = torch.where(count > 0, total / count.clamp_min(1.0), ema_prev)
        # What moves the EMA (``ema_input``, ``ema_count`` > 0 when anything does) and the level the
        # margin uses (``m_batch``). Collectives only when this call updates the EMA: an eval-mode
        # call that does not may run on one rank alone.
        m_batch, ema_input, ema_count = local, local, count
        if sync and self.dynamic and self.updates() and world() is not None:
            import torch.distributed as dist

            if self.distributed == "global":
                both = torch.stack([total, count])
                dist.all_reduce(both)
                ema_count = both[1]
                m_batch = torch.where(ema_count > 0, both[0] / ema_count.clamp_min(1.0), ema_prev)
                ema_input = m_batch
            else:  # official: local level; the EMA moves by the mean of the ranks' local means
                has = (count > 0).float()
                both = torch.stack([local * has, has])
                dist.all_reduce(both)
                ema_count = both[1]
                ema_input = torch.where(ema_count > 0, both[0] / ema_count.clamp_min(1.0), ema_prev)
        if not self.dynamic:
            return torch.full((), self.gamma0, device=device), {
                "m_batch": m_batch,
                "ema": self.ema.detach().float().clone(),
            }
        if self.updates() and bool(ema_count > 0):
            self.ema.copy_(self.momentum * self.ema + (1.0 - self.momentum) * ema_input)
            self.steps += 1
        ema = self.reference(fallback=m_batch)
        if self.granularity == "batch":
            level = m_batch
        elif self.granularity == "user":
            per_user = masked_mean(conf, cand_mask, dim=1)
            level = torch.where(cand_mask.any(dim=1), per_user, m_batch)[:, None]
        else:
            level = torch.where(cand_mask, conf, m_batch)
        gamma = self.gamma0 * (1.0 - self.alpha * (level - ema))
        return gamma, {"m_batch": m_batch, "ema": ema.clone()}
