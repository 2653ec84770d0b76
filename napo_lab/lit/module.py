"""The LightningModule: an LLM recommender with LoRA, trained by a pluggable loss object.

The module turns a batch (one prompt, 1+K completions) into log-probs, adds what the loss declares
it needs (the frozen SFT reference, the sequential model's scores and states, cross-prompt scores
for NAPO's exact sharing) and hands a LossInputs to the loss. It never sees loss settings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from napo_lab.losses.base import LossInputs, LossOutput, gather_items
from napo_lab.models.adapters import REFERENCE_ADAPTER, active_adapter, lora_inputs_as_given
from napo_lab.models.logprobs import completion_and_prompt_logps, completion_logps

log = logging.getLogger(__name__)
#: napo_lab's metric -> TRL's name for the same quantity (both are logged in the preference stage).
TRL_NAMES = {"rewards/accuracy": "rewards/accuracies", "rewards/margin": "rewards/margins"}


class RecLitModule(L.LightningModule):
    def __init__(self, model, loss: torch.nn.Module, pad_id: int, optim: Mapping[str, Any],
                 layout: str = "shared_prefix", stage: str = "pref", seqrec: torch.nn.Module | None = None,
                 train_counts: torch.Tensor | None = None, ref_cache=None):
        super().__init__()
        self.model, self.loss_fn, self.pad_id = model, loss, int(pad_id)
        self.optim_cfg, self.layout, self.stage = dict(optim), layout, stage
        self.pack_tokens = self.optim_cfg.get("pack_tokens")  # the stage's setting (None: one prompt per row)
        self.seqrec = seqrec
        if seqrec is not None:
            for p in seqrec.parameters():
                p.requires_grad_(False)
        self.register_buffer("train_counts", train_counts if train_counts is not None else torch.zeros(0),
                             persistent=False)
        self.ref_cache = ref_cache

    # -- scoring -------------------------------------------------------------------------------
    def _score(self, batch: Mapping[str, Any], cross: bool, history: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Policy-style log-probs [B, W] (and [B, B, W] cross-prompt scores when ``cross``; the history
        titles' summed log-probs [B] when ``history``)."""
        prompts, comps = batch["prompt_ids"], batch["completion_ids"]
        width = batch["item_ids"].shape[1]
        if not cross:
            targets = batch["history_positions"] if history else None
            logps, lengths, hist = completion_and_prompt_logps(self.model, prompts, comps, self.pad_id,
                                                               self.layout, targets, self.pack_tokens)
            return _widen(logps, width), _widen(lengths, width), hist
        filler = [self.pad_id]
        pool = [c for cs in comps for c in (list(cs) + [filler] * (width - len(cs)))]
        logps, lengths = completion_logps(self.model, prompts, [pool] * len(prompts), self.pad_id, self.layout,
                                          self.pack_tokens)
        bsz = len(prompts)
        cross_lp = logps.view(bsz, bsz, width)
        cross_len = lengths.view(bsz, bsz, width)
        own = torch.arange(bsz, device=logps.device)
        return cross_lp[own, own], cross_len[own, own], (cross_lp, cross_len)

    def _reference(self, batch, cross: bool):
        if self.ref_cache is not None and not cross:
            cached = self.ref_cache.lookup(batch)
            if cached is not None:
                return cached.to(self.device), None
        # The reference is a fixed function: no dropout (in train mode LoRA dropout acts on every adapter).
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), active_adapter(self.model, REFERENCE_ADAPTER):
                ref, _, ref_cross = self._score(batch, cross)
        finally:
            self.model.train(was_training)
        if self.ref_cache is not None and not cross:
            self.ref_cache.store(batch, ref)
        return ref, (ref_cross[0] if ref_cross is not None else None)

    def compute_loss(self, batch: Mapping[str, Any]) -> LossOutput:
        with lora_inputs_as_given(self.model):  # bit-identical, fewer copies under autocast
            return self._compute_loss(batch)

    def _compute_loss(self, batch: Mapping[str, Any]) -> LossOutput:
        loss = self.loss_fn
        cross = bool(getattr(loss, "needs_cross_logps", False))
        history = bool(getattr(loss, "needs_history_logps", False)) and not cross
        policy, lengths, extra = self._score(batch, cross, history)
        mask = batch["mask"].to(policy.device)
        inputs = LossInputs(policy_logps=policy, lengths=lengths.to(policy.dtype), mask=mask,
                            item_ids=batch["item_ids"], history=batch["history"])
        cross_pol = extra if cross else None
        if history:
            inputs.history_logps = extra
            inputs.history_tokens = torch.as_tensor(
                [sum(1 <= t < len(p) for t in ts) for p, ts in zip(batch["prompt_ids"], batch["history_positions"])],
                dtype=policy.dtype, device=policy.device)
        if cross_pol is not None:
            inputs.cross_policy_logps, inputs.cross_lengths = cross_pol[0], cross_pol[1].to(policy.dtype)
        if getattr(loss, "needs_reference", False):
            inputs.ref_logps, inputs.cross_ref_logps = self._reference(batch, cross)
        if getattr(loss, "needs_sequential_model", False):
            if self.seqrec is None:
                raise RuntimeError("this loss needs a sequential model but none was given to the module")
            with torch.no_grad():
                hist = batch["history"]
                inputs.user_states = self.seqrec.user_states(hist).float()
                all_scores = self.seqrec.scores(hist).float()
            inputs.seq_all_scores = all_scores
            # NaN for an unknown item id (< 0): the loss applies its documented fallback instead of
            # reading item 0's score.
            inputs.seq_scores = gather_items(all_scores, batch["item_ids"])
        if getattr(loss, "needs_pref_scores", False):
            if "pref_scores" not in batch:
                raise ValueError("this loss reads RecPO's candidate scores, which only RecPO's data has "
                                 "(dataset=movielens_recpo or lastfm_recpo)")
            inputs.pref_scores = batch["pref_scores"].to(policy.device)
        if self.train_counts.numel():
            inputs.popularity = gather_items(self.train_counts.float(), batch["item_ids"])
        self._last_inputs = inputs  # for the logps/* metrics of training_step
        return loss(inputs)

    # -- Lightning hooks -----------------------------------------------------------------------
    def pick_adaptive(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """ans / amns with ``scorer: self``: score every pool completion with the current policy (summed
        log-prob, no gradient, no dropout) and keep the ``adaptive_top_k`` best (napo_lab.data.batch_negatives)."""
        from napo_lab.data.batch_negatives import select_adaptive

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), lora_inputs_as_given(self.model):
                scores, _, _ = self._score(batch, cross=False)
        finally:
            self.model.train(was_training)
        return select_adaptive(dict(batch), scores, int(batch["adaptive_top_k"]))

    def training_step(self, batch, batch_idx):
        if batch.get("adaptive_top_k"):
            batch = self.pick_adaptive(batch)
        out = self.compute_loss(batch)
        if not torch.isfinite(out.loss):
            raise FloatingPointError(
                f"non-finite training loss ({out.loss.item()}) at step {self.global_step}; lower the learning "
                "rate or beta, or check the data. The last good checkpoint is kept.")
        bsz = len(batch["prompt_ids"])
        # sync_dist: under DDP the logged values are the mean over ranks (the global batch), not rank 0's.
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=bsz, sync_dist=True)
        for name, value in out.metrics.items():
            if name.startswith("rewards/") and self.stage == "sft":
                continue  # SFT has no rejected answers: reward metrics would mean nothing
            shown = name == "rewards/accuracy"
            self.log(f"train/{name}", value.detach().float(), prog_bar=shown, batch_size=bsz, sync_dist=True)
            if name in TRL_NAMES:  # the same value under TRL's name (DPOTrainer's logs)
                self.log(f"train/{TRL_NAMES[name]}", value.detach().float(), batch_size=bsz, sync_dist=True)
        inputs = getattr(self, "_last_inputs", None)
        if inputs is not None and self.stage != "sft" and inputs.policy_logps.shape[1] > 1:
            with torch.no_grad():
                lp, mask = inputs.policy_logps.detach().float(), inputs.mask[:, 1:].float()
                self.log("train/logps/chosen", lp[:, 0].mean(), batch_size=bsz, sync_dist=True)
                rejected = (lp[:, 1:] * mask).sum() / mask.sum().clamp(min=1)
                self.log("train/logps/rejected", rejected, batch_size=bsz, sync_dist=True)
        if self._trainer is not None and self.trainer.optimizers:
            self.log("train/lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), batch_size=bsz)
        return out.loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """The gradient norm before clipping (TRL's ``grad_norm``), over the trainable parameters."""
        grads = [p.grad.detach().float().norm() for p in self.model.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.stack(grads).norm(), batch_size=1)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        cfg = self.optim_cfg  # a stage config (napo_lab.config.schema.Stage): lr, weight_decay, warmup, scheduler
        opt = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]),
                                betas=(0.9, 0.999))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = int(math.ceil(float(cfg["warmup_ratio"]) * total))
        kind = cfg["scheduler"]

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / max(1, warm)
            if kind == "constant":
                return 1.0
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def state_dict(self, *args, **kwargs):
        # Checkpoints hold only trainable weights and loss state, not the frozen base model.
        full = super().state_dict(*args, **kwargs)
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in full.items() if k in keep or k.startswith("loss_fn.")}

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        return super().load_state_dict(state_dict, strict=False, **kwargs)


def _widen(t: torch.Tensor, width: int) -> torch.Tensor:
    if t.shape[1] >= width:
        return t[:, :width]
    return torch.cat([t, t.new_zeros((t.shape[0], width - t.shape[1]))], dim=1)
