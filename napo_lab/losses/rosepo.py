"""RosePO-style objective: cDPO with a personalised, per-negative smoothing factor.

RosePO is published as a paper only (no public code). What napo_lab takes from it: a DPO-style stage
after SFT; rejected responses drawn by strategy (self-hard, popularity, hallucinated, random,
mixable; implemented by the data side and declared in conf/loss/rosepo.yaml); a personalised
smoothing factor from a preference oracle used as a label-smoothing weight. INFERRED (napo_lab's
choices, not stated by the paper): the cDPO form per negative, the oracle being the sequential model
with ``eps = eps_max * sigmoid(z_l - z_w)``, the clip to ``[0, eps_max]``, the constant fallback,
and the averaging over negatives. See docs/rosepo.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import (
    LossInputs,
    check_choice,
    check_range,
    item_scores,
    masked_mean,
    pairwise_mean,
)
from napo_lab.losses.cdpo import cdpo_per_pair

SMOOTHING_SOURCES = ("auto", "inputs", "seqrec", "constant")


class RosePOLoss(RewardLoss):
    """Per-negative cDPO: ``-(1-eps_k) log sigmoid(beta D_k) - eps_k log sigmoid(-beta D_k)``.

    ``eps_k`` is the probability that the "rejected" item is in fact preferred by this user, so a
    likely false negative (an item the user may well like) is pushed down less, or not at all.

    Where ``eps`` comes from (``smoothing_source``):

    * ``inputs``: ``LossInputs.smoothing`` ``[B, K]`` (computed by the data side).
    * ``seqrec``: ``eps_max * sigmoid(z_l - z_w)`` (inferred), the sequential model's Bradley-Terry
      probability that the rejected item beats the positive, scaled to the cap. ``z`` is
      ``LossInputs.seq_scores`` if present, otherwise ``seq_all_scores`` gathered at ``item_ids``.
    * ``constant``: ``eps_fallback`` everywhere (plain cDPO).
    * ``auto`` (default): ``inputs`` if ``smoothing`` is given, else ``seqrec`` if scores are given,
      else ``constant``.

    Entries without an oracle value (non-finite score, or item id < 0: an item outside the catalogue,
    whose id is unknown, on either the ``seq_scores`` or the ``seq_all_scores`` path) take
    ``eps_fallback``. napo_lab's ``hallucinated`` negatives are real catalogue items outside the
    prompt's candidate list, so they have ids and get an oracle value. All values are clipped to ``[0, eps_max]``; eps carries no
    gradient.

    Args:
        beta: inverse temperature (> 0).
        eps_max: cap of the smoothing factor, in [0, 0.5).
        eps_fallback: constant factor where no oracle value exists, in [0, 0.5) (clipped to eps_max).
        smoothing_source: ``auto`` | ``inputs`` | ``seqrec`` | ``constant``.
        use_reference: ``h = s - s_ref`` (default, DPO-style) or ``h = s``.
    """

    def __init__(
        self,
        beta: float = 1.0,
        eps_max: float = 0.3,
        eps_fallback: float = 0.1,
        smoothing_source: str = "auto",
        use_reference: bool = True,
    ) -> None:
        super().__init__(beta=beta, use_reference=use_reference)
        self.eps_max = check_range("eps_max", eps_max, 0.0, 0.5, low_open=False, high_open=True)
        self.eps_fallback = check_range(
            "eps_fallback", eps_fallback, 0.0, 0.5, low_open=False, high_open=True
        )
        self.smoothing_source = check_choice("smoothing_source", smoothing_source, SMOOTHING_SOURCES)
        self.needs_sequential_model = self.smoothing_source in ("auto", "seqrec")

    def smoothing(self, inputs: LossInputs, like: Tensor) -> Tensor:
        """``[B, K]`` eps for every negative (see the class docstring for the sources)."""
        source = self.smoothing_source
        if source == "auto":
            if inputs.smoothing is not None:
                source = "inputs"
            elif inputs.seq_scores is not None or (
                inputs.seq_all_scores is not None and inputs.item_ids is not None
            ):
                source = "seqrec"
            else:
                source = "constant"
        with torch.no_grad():
            fallback = torch.full_like(like, min(self.eps_fallback, self.eps_max))
            if source == "constant":
                return fallback
            if source == "inputs":
                if inputs.smoothing is None:
                    raise ValueError("RosePOLoss(smoothing_source=inputs) needs LossInputs.smoothing")
                eps = inputs.smoothing.detach().to(like.dtype)
                if eps.shape != like.shape:
                    raise ValueError(
                        f"smoothing must be [B, K] = {tuple(like.shape)}, got {tuple(eps.shape)}"
                    )
            else:
                z = item_scores(inputs)  # NaN for an unknown item (id < 0), whichever field it came from
                if z is None:
                    raise ValueError(
                        "RosePOLoss(smoothing_source=seqrec) needs seq_scores or seq_all_scores+item_ids"
                    )
                z = z.to(like.dtype)
                eps = self.eps_max * torch.sigmoid(z[:, 1:] - z[:, :1])
            eps = torch.where(torch.isfinite(eps), eps, fallback)
            return eps.clamp(0.0, self.eps_max)

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        eps = self.smoothing(inputs, rejected)
        per_pair = cdpo_per_pair(chosen[:, None] - rejected, eps)
        return pairwise_mean(per_pair, neg_mask), {"rosepo/eps": masked_mean(eps, neg_mask)}
