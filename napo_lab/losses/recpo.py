"""RecPO-style objective: S-DPO with a per-negative reward margin inside the logsumexp."""

from __future__ import annotations

import torch
from torch import Tensor

from napo_lab.losses._family import RewardLoss
from napo_lab.losses.base import (
    LossInputs,
    check_choice,
    check_finite,
    example_mean,
    item_scores,
    masked_mean,
    require,
)
from napo_lab.losses.sdpo import sdpo_per_example

MARGIN_MODES = ("constant", "seq_score")


class RecPOLoss(RewardLoss):
    """``logsumexp([0, m_k + beta (h_lk - h_w) for valid k])``.

    A positive ``m_k`` asks the positive to beat negative k by ``m_k / beta`` in log-ratio before
    the term stops contributing, i.e. a per-negative margin.

    Margin modes (napo_lab's choice; "RecPO-style" because only the shape is taken from the paper):

    * ``constant``: ``m_k = margin`` for every negative.
    * ``seq_score``: ``m_k = margin * sigmoid(z_w - z_lk)`` with ``z`` the sequential model's logits
      of the completion items (``LossInputs.seq_scores``). A negative the sequential model clearly
      ranks below the positive gets nearly the full margin; one it ranks above the positive (a
      possible false negative) gets almost none. The margin carries no gradient (the sequential
      model is frozen). Non-finite scores, and items whose id is unknown (< 0, outside the
      catalogue), fall back to ``margin / 2`` (the value at equal scores).

    Args:
        beta: inverse temperature (> 0).
        margin: margin scale (finite).
        margin_mode: ``constant`` | ``seq_score``.
        use_reference: ``h = s - s_ref`` (default) or ``h = s``.
    """

    def __init__(
        self,
        beta: float = 1.0,
        margin: float = 0.5,
        margin_mode: str = "constant",
        use_reference: bool = True,
    ) -> None:
        super().__init__(beta=beta, use_reference=use_reference)
        self.margin = check_finite("margin", margin)
        self.margin_mode = check_choice("margin_mode", margin_mode, MARGIN_MODES)
        self.needs_sequential_model = self.margin_mode == "seq_score"

    def margins(self, inputs: LossInputs, like: Tensor) -> Tensor | float:
        if self.margin_mode == "constant":
            return self.margin
        require(inputs, "seq_scores", loss="RecPOLoss(margin_mode=seq_score)")
        with torch.no_grad():
            z = item_scores(inputs).to(like.dtype)  # NaN where the item id is unknown (< 0)
            diff = z[:, :1] - z[:, 1:]
            weight = torch.where(torch.isfinite(diff), torch.sigmoid(diff), torch.full_like(diff, 0.5))
            return self.margin * weight

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        margin = self.margins(inputs, rejected)
        per_example = sdpo_per_example(chosen, rejected, neg_mask, margin=margin)
        extras = {}
        if isinstance(margin, Tensor):
            extras["recpo/margin"] = masked_mean(margin, neg_mask)
        return example_mean(per_example, neg_mask.any(dim=1)), extras
