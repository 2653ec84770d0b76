"""RecPO: S-DPO with a per-negative reward margin inside the logsumexp.

``margin_mode=score_ratio`` / ``score_log_diff`` is RecPO as its authors run it (HoytWen/RecPO,
trainer/rec_dpo_trainer.py ``redpo_loss``): the margin of negative k is ``lambda * s_w / s_k`` (their
``ratio=True``, the default) or ``lambda * log(1 + s_w - s_k)``, with ``s`` each candidate's rating x
recency score from the data (``LossInputs.pref_scores``, napo_lab/data/sources/recpo.py). Their code
adds ``margin / beta`` to the log-ratio gap and multiplies the whole by beta, i.e. the margin enters
the exponent unscaled by beta, as here. ``constant`` / ``seq_score`` are napo_lab's own margins.
"""

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

MARGIN_MODES = ("constant", "seq_score", "score_ratio", "score_log_diff")


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
    * ``score_ratio`` (RecPO): ``m_k = margin * s_w / s_k`` with ``s`` = ``LossInputs.pref_scores``.
    * ``score_log_diff`` (RecPO's other form): ``m_k = margin * log(1 + s_w - s_k)``.
      For both, ``margin`` is RecPO's lambda (2 in its code), and ``margin = 0`` is S-DPO exactly.
      A valid completion without a finite score (or ``s_k <= 0``, ``s_w - s_k <= -1``) is refused with
      a ValueError: it means the data is not RecPO's.

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
        self.needs_pref_scores = self.margin_mode in ("score_ratio", "score_log_diff")

    def margins(self, inputs: LossInputs, like: Tensor) -> Tensor | float:
        if self.margin_mode == "constant":
            return self.margin
        if self.needs_pref_scores:
            return self.score_margins(inputs, like)
        require(inputs, "seq_scores", loss="RecPOLoss(margin_mode=seq_score)")
        with torch.no_grad():
            z = item_scores(inputs).to(like.dtype)  # NaN where the item id is unknown (< 0)
            diff = z[:, :1] - z[:, 1:]
            weight = torch.where(torch.isfinite(diff), torch.sigmoid(diff), torch.full_like(diff, 0.5))
            return self.margin * weight

    def score_margins(self, inputs: LossInputs, like: Tensor) -> Tensor:
        require(inputs, "pref_scores", loss=f"RecPOLoss(margin_mode={self.margin_mode})")
        with torch.no_grad():
            s = inputs.pref_scores.detach().to(like.device, like.dtype)
            neg_mask = inputs.mask.to(torch.bool)[:, 1:].to(like.device)
            s_w, s_k = s[:, :1].expand_as(s[:, 1:]), s[:, 1:]
            if self.margin_mode == "score_ratio":
                bad = neg_mask & ~(torch.isfinite(s_w) & torch.isfinite(s_k) & (s_k > 0))
                value = s_w / torch.where(bad | ~neg_mask, torch.ones_like(s_k), s_k)
            else:
                diff = s_w - s_k
                bad = neg_mask & ~(torch.isfinite(diff) & (diff > -1))
                value = torch.log1p(torch.where(bad | ~neg_mask, torch.zeros_like(diff), diff))
            if bool(bad.any()):
                raise ValueError(f"RecPOLoss(margin_mode={self.margin_mode}): {int(bad.sum())} negatives have no usable "
                                 "score (pref_scores must be finite, > 0 for score_ratio)")
            return self.margin * torch.where(neg_mask, value, torch.zeros_like(value))

    def objective(self, chosen: Tensor, rejected: Tensor, neg_mask: Tensor, inputs: LossInputs):
        margin = self.margins(inputs, rejected)
        per_example = sdpo_per_example(chosen, rejected, neg_mask, margin=margin)
        extras = {}
        if isinstance(margin, Tensor):
            extras["recpo/margin"] = masked_mean(margin, neg_mask)
        return example_mean(per_example, neg_mask.any(dim=1)), extras
