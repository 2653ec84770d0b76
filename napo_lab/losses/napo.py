"""NAPO: S-DPO-style softmax loss with in-batch negative sharing and a dynamic margin.

``L_i = logsumexp([0, gamma + r_j - r_w for j in N(i)])`` with ``r = beta * s`` (reference-free, as
the official code) or ``r = beta * (s - s_ref)`` (``use_reference``), and ``N(i)`` = user i's own
valid negatives plus those borrowed from its most similar users. docs/napo.md lists every switch and
how ``conf/loss/napo_official.yaml`` differs from ``conf/loss/napo.yaml``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from napo_lab.losses.base import (
    LossInputs,
    LossOutput,
    PreferenceLoss,
    check_choice,
    check_positive,
    check_range,
    example_mean,
    gather_items,
    item_scores,
    lse_with_zero,
    masked_mean,
    require,
    reward_metrics,
    sequence_logps,
    valid_mask,
    validate_shapes,
)
from napo_lab.losses.napo_margin import DISTRIBUTED_MODES, GRANULARITIES, DynamicMargin
from napo_lab.losses.napo_sharing import (
    NEIGHBOUR_COUNTS,
    Pool,
    batch_sizes,
    false_negatives,
    gathered_pool,
    local_pool,
    n_neighbours,
    select_neighbours,
    world,
)

SHARE_MODES = ("none", "reuse", "exact")
BORROWED_SCORES = ("borrower", "owner")


class NAPOLoss(PreferenceLoss):
    """Negative-aware preference optimisation.

    Args:
        beta: reward scale (> 0).
        share: ``none`` (own negatives only) | ``reuse`` (official: a borrowed negative keeps the
            log-prob computed under its owner's prompt; no extra forward pass) | ``exact`` (the
            borrowed item is scored under the borrower's own prompt, ``cross_policy_logps[i, j, k]``,
            so the softmax compares rewards under one prompt, as the S-DPO derivation assumes).
        rho: share of the other users to borrow from, in (0, 1]: ``rho * (N - 1)`` neighbours, rounded
            down as ``neighbour_count`` says.
        neighbour_count: ``tolerant`` (``floor(rho * (N - 1) + 1e-9)``, the count the decimal rho
            means) | ``truncate`` (official: ``int(rho * (N - 1))``, one fewer when the float product
            lands just below an integer).
        mask_false_negatives: drop a borrowed item equal to the borrower's positive or in its history
            (the official code does not).
        detach_shared: no gradient through borrowed negatives (official: true).
        detach_own_negatives: no gradient through the user's own negatives either; with both set only
            the positive gets gradient, which is what the official code does when sharing is on.
        gamma0: base margin, >= 0 (finite; 0 disables the margin). ``gamma_t = gamma0 * (1 - alpha *
            (level - M_t))`` is a margin the positive must clear; a negative gamma0 would turn it into a
            bonus and reverse the confidence rule (surer false negatives would get a larger margin).
        alpha: confidence sensitivity of the margin, >= 0 (finite; 0 = constant margin ``gamma0``).
            A negative alpha reverses the confidence rule in the same way.
        momentum: EMA momentum m in [0, 1).
        granularity: ``batch`` (official, one margin per step) | ``user`` | ``negative``.
        borrowed_score: the confidence of a borrowed negative in the margin: ``borrower`` (the
            sequential model's score of the item for the user whose softmax it enters,
            ``seq_all_scores[i, item]``) | ``owner`` (official: the score it has for the user it was
            drawn for).
        ema_bias_correction: the margin compares with ``M_t / (1 - m^t)`` instead of the raw EMA,
            which starts at 0 (as Adam corrects its moments). Off (official): early gammas are far
            from gamma0 and can be negative.
        ema_in_eval: also update the EMA when the loss runs in eval mode (the official code does in
            its evaluation passes). Off: eval mode reads the EMA and leaves it alone.
        distributed_margin: under torch.distributed, ``global`` (every rank's margin and the EMA use
            ``M_batch`` over all ranks' pairs) | ``local`` (official: each rank's margin uses its own
            ``M_batch``; the EMA moves by the mean over ranks of the local ``M_batch``).
        use_reference: rewards from ``s - s_ref`` (needs the SFT reference) instead of ``s``.
        distributed_pool: with torch.distributed (world size > 1) and ``share=reuse``, borrow from all
            ranks' users. ``share=exact`` always uses the local pool: scoring a borrowed item under
            this rank's prompts needs the other ranks' completion tokens, which this loss never sees.

    Inputs read: ``policy_logps``, ``mask``, ``ref_logps`` (use_reference), ``user_states`` and
    ``item_ids`` (sharing), ``history`` (false-negative masking, optional), ``seq_scores`` or
    ``seq_all_scores`` (dynamic margin; ``borrowed_score=borrower`` needs ``seq_all_scores``; an item id
    < 0 has no score and is left out of ``M_batch``), ``cross_policy_logps`` / ``cross_ref_logps`` (exact). In exact mode
    only the entries ``[i, j]`` with ``j in self.neighbours(user_states)[i]`` are read; the others may
    hold anything (NaN included), so the caller can score just those pairs.
    """

    def __init__(
        self,
        beta: float = 1.0,
        share: str = "exact",
        rho: float = 0.7,
        mask_false_negatives: bool = True,
        detach_shared: bool = False,
        detach_own_negatives: bool = False,
        gamma0: float = 1.0,
        alpha: float = 0.3,
        momentum: float = 0.9,
        granularity: str = "batch",
        use_reference: bool = False,
        distributed_pool: bool = True,
        neighbour_count: str = "tolerant",
        borrowed_score: str = "borrower",
        ema_bias_correction: bool = True,
        ema_in_eval: bool = False,
        distributed_margin: str = "global",
    ) -> None:
        super().__init__()
        self.beta = check_positive("beta", beta)
        self.share = check_choice("share", share, SHARE_MODES)
        self.rho = check_range("rho", rho, 0.0, 1.0, low_open=True, high_open=False)
        self.mask_false_negatives = bool(mask_false_negatives)
        self.detach_shared = bool(detach_shared)
        self.detach_own_negatives = bool(detach_own_negatives)
        self.use_reference = bool(use_reference)
        self.distributed_pool = bool(distributed_pool)
        self.neighbour_count = check_choice("neighbour_count", neighbour_count, NEIGHBOUR_COUNTS)
        self.borrowed_score = check_choice("borrowed_score", borrowed_score, BORROWED_SCORES)
        self.margin = DynamicMargin(
            gamma0=check_range("gamma0", gamma0, 0.0, math.inf, low_open=False, high_open=True),
            alpha=check_range("alpha", alpha, 0.0, math.inf, low_open=False, high_open=True),
            momentum=check_range("momentum", momentum, 0.0, 1.0, low_open=False, high_open=True),
            granularity=check_choice("granularity", granularity, GRANULARITIES),
            bias_correction=bool(ema_bias_correction),
            update_in_eval=bool(ema_in_eval),
            distributed=check_choice("distributed_margin", distributed_margin, DISTRIBUTED_MODES),
        )
        self.needs_reference = self.use_reference
        self.needs_cross_logps = self.share == "exact"
        self.needs_sequential_model = self.share != "none" or self.margin.dynamic

    # ------------------------------------------------------------------ helpers

    def n_neighbours(self, n_users: int) -> int:
        return n_neighbours(self.rho, n_users, self.neighbour_count)

    def neighbours(self, user_states: Tensor) -> Tensor:
        """``[B, n]`` local neighbour indices, ``n = self.n_neighbours(B)`` (what ``share=exact``
        borrows from)."""
        b, device = user_states.shape[0], user_states.device
        empty = torch.zeros(b, 0, device=device)
        pool = local_pool(user_states, empty, empty.bool(), empty.long(), None)
        return select_neighbours(user_states, pool, self.n_neighbours(b))

    def _own_confidence(self, inputs: LossInputs, like: Tensor) -> Tensor | None:
        """Owner's score of each own negative, NaN where the item id is unknown (no oracle value)."""
        scores = item_scores(inputs)
        return None if scores is None else scores[:, 1:].to(like.dtype)

    def _borrowed_confidence(self, inputs: LossInputs, pool: Pool, nb: Tensor, b_items: Tensor) -> Tensor:
        """``[B, n*K]`` confidence of the borrowed negatives (see ``borrowed_score``)."""
        b = nb.shape[0]
        if self.borrowed_score == "owner":
            return pool.scores[nb].reshape(b, -1)
        if inputs.seq_all_scores is None:
            if self.margin.dynamic:
                require(inputs, "seq_all_scores", loss="NAPOLoss(borrowed_score=borrower)")
            return torch.full(b_items.reshape(b, -1).shape, float("nan"), device=nb.device)  # stats only
        return gather_items(inputs.seq_all_scores, b_items.reshape(b, -1))

    def _pool(
        self, inputs: LossInputs, neg_rewards: Tensor, neg_mask: Tensor, own_conf: Tensor | None
    ) -> Pool:
        items = inputs.item_ids[:, 1:].long()
        ws = world() if (self.share == "reuse" and self.distributed_pool) else None
        if ws is None:
            return local_pool(inputs.user_states, neg_rewards, neg_mask, items, own_conf)
        rank, world_size = ws
        shared = neg_rewards.detach() if self.detach_shared else neg_rewards
        sizes = batch_sizes(neg_rewards.shape[0], neg_rewards.device, world_size)
        return gathered_pool(inputs.user_states, shared, neg_mask, items, own_conf, rank, world_size, sizes)

    def _borrowed_rewards(self, inputs: LossInputs, pool: Pool, nb: Tensor, b_mask: Tensor) -> Tensor:
        """``[B, n, K]`` rewards of the borrowed negatives (before masking)."""
        if self.share == "reuse":
            return pool.rewards[nb]
        cross = inputs.cross_policy_logps
        k = pool.mask.shape[1]
        index = nb[:, :, None].expand(-1, -1, k)
        dtype = torch.promote_types(cross.dtype, torch.float32)
        zero = torch.zeros((), dtype=dtype, device=cross.device)
        values = torch.where(b_mask, cross[:, :, 1:].gather(1, index).to(dtype), zero)
        if self.use_reference:
            ref = inputs.cross_ref_logps[:, :, 1:].gather(1, index).to(dtype)
            values = values - torch.where(b_mask, ref, zero)
        return self.beta * values

    # ------------------------------------------------------------------ loss

    def per_example(self, inputs: LossInputs) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Per-example losses ``[B]``, which examples count ``[B]`` and the metrics."""
        validate_shapes(inputs)
        name = f"NAPOLoss(share={self.share})"
        if self.share != "none":
            require(inputs, "user_states", "item_ids", loss=name)
        if self.share == "exact":
            require(inputs, "cross_policy_logps", loss=name)
            if self.use_reference:
                require(inputs, "cross_ref_logps", loss=name)
        mask = valid_mask(inputs)
        rewards = self.beta * sequence_logps(inputs, use_reference=self.use_reference)
        chosen, neg_rewards, neg_mask = rewards[:, 0], rewards[:, 1:], mask[:, 1:]
        own = neg_rewards.detach() if self.detach_own_negatives else neg_rewards
        own_conf = self._own_confidence(inputs, rewards)

        cand = [own]
        cand_mask = [neg_mask]
        conf = [own_conf]
        extras: dict[str, Tensor] = {}
        masked_borrowed = torch.zeros((), device=rewards.device)
        n = 0
        if self.share != "none":
            pool = self._pool(inputs, neg_rewards, neg_mask, own_conf)
            n = self.n_neighbours(pool.n_users)
            nb = select_neighbours(inputs.user_states, pool, n)  # [B, n]
            b_mask = pool.mask[nb]  # [B, n, K]
            b_items = pool.items[nb]
            if self.mask_false_negatives:
                fn = false_negatives(b_items, inputs.item_ids[:, 0].long(), inputs.history) & b_mask
                masked_borrowed = fn.sum().float()
                b_mask = b_mask & ~fn
            borrowed = self._borrowed_rewards(inputs, pool, nb, b_mask)
            if self.detach_shared:
                borrowed = borrowed.detach()
            b = borrowed.shape[0]
            cand.append(borrowed.reshape(b, -1).to(own.dtype))
            cand_mask.append(b_mask.reshape(b, -1))
            if own_conf is not None:
                conf.append(self._borrowed_confidence(inputs, pool, nb, b_items).to(own_conf.dtype))
        candidates = torch.cat(cand, dim=1)
        candidates_mask = torch.cat(cand_mask, dim=1)
        confidence = None if own_conf is None else torch.cat(conf, dim=1)

        gamma, stats = self.margin(confidence, candidates_mask, sync=True)
        gamma = gamma.to(candidates.dtype)
        losses = lse_with_zero(gamma + candidates - chosen[:, None], candidates_mask)
        has = candidates_mask.any(dim=1)

        metrics = reward_metrics(chosen, neg_rewards, neg_mask)
        extras["napo/gamma"] = (
            masked_mean(gamma.expand(candidates.shape).float(), candidates_mask)
            if candidates.numel()
            else gamma.float().mean()
        )
        extras["napo/m_batch"] = stats["m_batch"]
        extras["napo/ema"] = stats["ema"]
        extras["napo/pool_size"] = candidates_mask.sum(dim=1).float().mean()
        extras["napo/masked_borrowed"] = masked_borrowed
        extras["napo/n_neighbours"] = torch.tensor(float(n), device=rewards.device)
        metrics.update({k: v.detach().float() for k, v in extras.items()})
        return losses, has, metrics

    def forward(self, inputs: LossInputs) -> LossOutput:
        losses, has, metrics = self.per_example(inputs)
        return LossOutput(loss=example_mean(losses, has), metrics=metrics)

