"""The one loss interface every objective implements, plus the masked-maths helpers they share.

Conventions (see docs/ARCHITECTURE.md section 3):

* column 0 of every ``[B, 1+K]`` tensor is the positive (chosen) completion, columns 1..K negatives;
* ``mask`` marks valid completions. A masked negative must contribute *exactly* nothing: not to the
  loss, not to a mean's denominator, and not a NaN to the gradient, whatever value it holds. All
  helpers therefore select with ``torch.where`` (never multiply by the mask, since ``NaN * 0`` is NaN)
  and feed ``-inf`` to ``logsumexp``;
* maths runs in at least float32 (bf16 inputs are upcast; the gradient flows back in their dtype),
  so a log-ratio gap of 1e3 stays finite;
* a batch loss is the mean over the examples that have at least one valid comparison; an example
  whose negatives are all masked is left out of numerator and denominator alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class LossInputs:
    """Everything an objective may read. Only the first three fields are always filled in."""

    policy_logps: Tensor  # [B, 1+K] summed log-probs of each completion, col 0 = positive
    lengths: Tensor  # [B, 1+K] number of completion tokens (title + EOS)
    mask: Tensor  # [B, 1+K] bool, col 0 always True
    ref_logps: Tensor | None = None  # [B, 1+K] frozen reference (SFT) model
    item_ids: Tensor | None = None  # [B, 1+K]
    history: Tensor | None = None  # [B, H] item ids, -1 padded
    seq_scores: Tensor | None = None  # [B, 1+K] sequential-model score (logit) of each completion item;
    #   an entry whose item_ids is < 0 is ignored (read as NaN: no score, see item_scores)
    user_states: Tensor | None = None  # [B, D] sequential-model user representation
    cross_policy_logps: Tensor | None = None  # [B, B, 1+K]: [i, j, k] = log-prob of user j's k-th
    #   completion under user i's prompt (NAPO share=exact)
    cross_ref_logps: Tensor | None = None  # same for the reference
    cross_lengths: Tensor | None = None  # [B, B, 1+K]
    popularity: Tensor | None = None  # [B, 1+K] train counts of the completion items
    smoothing: Tensor | None = None  # [B, K] per-negative label-smoothing weight (RosePO)
    seq_all_scores: Tensor | None = None  # [B, n_items] sequential-model logits for every item
    history_logps: Tensor | None = None  # [B] summed log-probs of the history-title tokens in each prompt
    history_tokens: Tensor | None = None  # [B] how many such tokens (SFT's history loss)
    pref_scores: Tensor | None = None  # [B, 1+K] data-side preference score of each completion item
    #   (RecPO's rating x recency score; NaN where unknown)


@dataclass
class LossOutput:
    loss: Tensor  # scalar
    metrics: dict[str, Tensor] = field(default_factory=dict)  # detached; always the REWARD_METRICS


REWARD_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy")


class PreferenceLoss(nn.Module):
    """Base class. Subclasses set the three ``needs_*`` flags (class or instance attributes) so the
    LightningModule computes only what the objective reads (no reference pass when
    ``needs_reference`` is False, and so on). ``needs_negatives`` says whether the objective
    compares the positive with negatives: with K = 0 such a loss is identically 0 and trains
    nothing, so :func:`config_problems` refuses that setting."""

    needs_reference: bool = True
    needs_sequential_model: bool = False
    needs_cross_logps: bool = False
    needs_negatives: bool = True
    needs_pref_scores: bool = False  # True -> pref_scores is filled in (RecPO's data gives them)

    def forward(self, inputs: LossInputs) -> LossOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, inputs: LossInputs) -> LossOutput:  # typed alias of nn.Module.__call__
        return super().__call__(inputs)


# --------------------------------------------------------------------------- constructor checks


def check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_finite(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool, high_open: bool
) -> float:
    """Check ``value`` lies in the interval; the message spells the interval, e.g. ``[0, 0.5)``."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {'|'.join(choices)}, got {value!r}")
    return value


def config_problems(objective: nn.Module, num_negatives: int) -> list[str]:
    """Problems with running ``objective`` on K = ``num_negatives`` negatives per example, one line
    each, naming the config key (the config validation reports them with its other problems).

    Options of the objective alone are checked by its constructor; this covers what depends on the
    data side too.
    """
    problems = []
    if getattr(objective, "needs_negatives", False) and num_negatives < 1:
        problems.append(
            f"loss.num_negatives={num_negatives}: {type(objective).__name__} compares the positive with "
            "negatives, so it needs K >= 1 (with K = 0 its loss is exactly 0 and nothing is trained)"
        )
    return problems


# --------------------------------------------------------------------------- input handling


def gather_items(values: Tensor, item_ids: Tensor) -> Tensor:
    """``values[b, item_ids[b, m]]`` for a per-item table ``values`` (``[B, n_items]``, or ``[n_items]``
    shared by every row), in floating point, NaN where the id is unknown (< 0).

    An unknown id has no value: NaN lets each objective apply its documented fallback (RosePO's
    ``eps_fallback``, NAPO leaving the negative out of ``M_batch``, RecPO's half margin) instead of
    silently reading item 0's value, which is what ``gather(ids.clamp(min=0))`` would do.
    """
    ids = item_ids.long().to(values.device)
    table = values.detach() if values.is_floating_point() else values.detach().to(torch.float32)
    if table.dim() == 1:
        table = table.unsqueeze(0).expand(ids.shape[0], -1)
    picked = table.gather(1, ids.clamp_min(0))
    return torch.where(ids >= 0, picked, torch.full_like(picked, float("nan")))


def item_scores(inputs: LossInputs) -> Tensor | None:
    """``[B, 1+K]`` sequential-model score of each completion item, NaN where the item id is unknown.

    From ``seq_scores`` when given (entries whose ``item_ids`` is < 0 become NaN whatever the caller
    put there), else from ``seq_all_scores`` gathered at ``item_ids``; None when neither is there.
    Detached: the sequential model is a frozen oracle.
    """
    ids = inputs.item_ids
    if inputs.seq_scores is not None:
        scores = inputs.seq_scores.detach()
        if ids is None:
            return scores
        known = ids.to(scores.device) >= 0
        return torch.where(known, scores, torch.full_like(scores, float("nan")))
    if inputs.seq_all_scores is not None and ids is not None:
        return gather_items(inputs.seq_all_scores, ids)
    return None


def compute_dtype(t: Tensor) -> torch.dtype:
    """At least float32: bf16/fp16 log-prob gaps of 1e3 would otherwise lose all precision."""
    return torch.promote_types(t.dtype, torch.float32)


def require(inputs: LossInputs, *names: str, loss: str) -> None:
    """Raise a ValueError naming the missing field(s): a silent ``None`` would fail much later."""
    missing = [n for n in names if getattr(inputs, n) is None]
    if missing:
        raise ValueError(f"{loss} needs LossInputs.{', '.join(missing)}")


def validate_shapes(inputs: LossInputs) -> None:
    p = inputs.policy_logps
    if p.dim() != 2 or p.shape[1] < 1:
        raise ValueError(f"policy_logps must be [B, 1+K], got {tuple(p.shape)}")
    for name in ("lengths", "mask", "ref_logps", "item_ids", "seq_scores", "popularity", "pref_scores"):
        t = getattr(inputs, name)
        if t is not None and tuple(t.shape) != tuple(p.shape):
            raise ValueError(
                f"{name} must have the shape of policy_logps {tuple(p.shape)}, got {tuple(t.shape)}"
            )


def valid_mask(inputs: LossInputs) -> Tensor:
    """Bool mask with column 0 forced True (the positive always exists)."""
    mask = inputs.mask.to(torch.bool).clone()
    mask[:, 0] = True
    return mask


def sequence_logps(inputs: LossInputs, *, use_reference: bool, length_normalise: bool = False) -> Tensor:
    """``s`` (or ``h = s - s_ref``), optionally divided by the completion length, in compute dtype.

    Masked entries are replaced by 0 *before* any arithmetic, so a NaN/inf padding value never
    reaches the result, and ``torch.where`` routes a zero gradient to it.
    """
    mask = valid_mask(inputs)
    dtype = compute_dtype(inputs.policy_logps)
    zero = torch.zeros((), dtype=dtype, device=inputs.policy_logps.device)
    values = torch.where(mask, inputs.policy_logps.to(dtype), zero)
    if use_reference:
        if inputs.ref_logps is None:
            raise ValueError("this loss uses the reference model: LossInputs.ref_logps is required")
        values = values - torch.where(mask, inputs.ref_logps.to(dtype), zero)
    if length_normalise:
        lengths = torch.where(mask, inputs.lengths.to(dtype), torch.ones_like(zero))
        values = values / lengths.clamp_min(1.0)
    return values


def lse_with_zero(logits: Tensor, mask: Tensor) -> Tensor:
    """``log(1 + sum_k exp(logits[:, k]))`` over valid k, i.e. ``logsumexp([0, logits...])``.

    Never exp-then-log: finite for any finite logit. Masked entries become ``-inf`` (weight 0,
    gradient exactly 0). A row with no valid entry gives ``log 1 = 0``.
    """
    neg_inf = torch.full((), float("-inf"), dtype=logits.dtype, device=logits.device)
    masked = torch.where(mask, logits, neg_inf)
    zeros = torch.zeros(logits.shape[0], 1, dtype=logits.dtype, device=logits.device)
    return torch.logsumexp(torch.cat([zeros, masked], dim=1), dim=1)


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean over entries where ``mask``; 0 where there is none (never NaN)."""
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    selected = torch.where(mask, values, zero)
    if dim is None:
        return selected.sum() / mask.sum().clamp_min(1).to(values.dtype)
    return selected.sum(dim) / mask.sum(dim).clamp_min(1).to(values.dtype)


def example_mean(per_example: Tensor, has_comparison: Tensor) -> Tensor:
    """Batch mean over examples with at least one valid comparison (0 with a live graph if none)."""
    return masked_mean(per_example, has_comparison)


def pairwise_mean(per_pair: Tensor, neg_mask: Tensor) -> Tensor:
    """Pairwise objectives with K > 1: average over an example's valid negatives, then over examples.

    Averaging per example first keeps every example's weight equal whatever its number of valid
    negatives (a padded example does not count less or more). At K = 1 it is plain DPO.
    """
    per_example = masked_mean(per_pair, neg_mask, dim=1)
    return example_mean(per_example, neg_mask.any(dim=1))


def reward_metrics(chosen: Tensor, rejected: Tensor, neg_mask: Tensor) -> dict[str, Tensor]:
    """The four metrics every loss logs, from per-example chosen rewards ``[B]`` and per-negative
    rejected rewards ``[B, K]``. Rejected and accuracy are over valid (example, negative) pairs;
    both are 0 when there is no valid negative (e.g. SFT with K = 0)."""
    with torch.no_grad():
        chosen = chosen.detach().float()
        rejected = rejected.detach().float()
        chosen_mean = chosen.mean() if chosen.numel() else chosen.new_zeros(())
        rejected_mean = masked_mean(rejected, neg_mask)
        wins = (chosen[:, None] > rejected).float()
        accuracy = masked_mean(wins, neg_mask)
        return {
            "rewards/chosen": chosen_mean,
            "rewards/rejected": rejected_mean,
            "rewards/margin": chosen_mean - rejected_mean,
            "rewards/accuracy": accuracy,
        }


def split(rewards: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[B, 1+K]`` -> chosen ``[B]``, rejected ``[B, K]``, negative mask ``[B, K]``."""
    return rewards[:, 0], rewards[:, 1:], mask[:, 1:]
