"""LightningModule that trains a :class:`SeqRecModel` on (history -> next item) rows and selects the
best epoch on the same 20-candidate validation lists the LLMs are evaluated on."""

from __future__ import annotations

import copy
import logging

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from napo_lab.models.seqrec.base import SeqRecModel

log = logging.getLogger(__name__)


class SeqRecLightning(L.LightningModule):
    """Losses: ``ce`` = full softmax over the catalogue (default; catalogues here are < 5k items),
    ``bpr`` = -log sigmoid(pos - neg) per uniform negative, ``sampled_softmax`` = softmax over
    [pos, negatives]. Without a sampler, negatives are drawn uniformly and never equal the target.

    With a ``neg_sampler`` (``top_k`` set for ans/amns), batches are dicts carrying their negatives
    (napo_lab.models.seqrec.negative_batches) and the loss is one of napo_lab.models.seqrec.objectives:
    ``bce`` (the public negative-sampling code's), ``bpr`` or ``sampled_softmax``. Validation ranks the
    val rows' candidates and, when the val batches carry targets, the whole catalogue (``full/...``)."""

    def __init__(
        self,
        model: SeqRecModel,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        loss: str = "ce",
        num_negatives: int = 1,
        monitor: str = "ndcg@10",
        top_k: int = 0,
        adam_beta2: float = 0.999,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.loss_name, self.num_negatives, self.monitor = loss, num_negatives, monitor
        self.top_k, self.adam_beta2 = int(top_k), float(adam_beta2)
        self._val_full_ranks: list[Tensor] = []
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, Tensor] | None = None
        self.best_metrics: dict[str, float] = {}
        self._val_scores: list[Tensor] = []
        self._val_targets: list[Tensor] = []

    def compute_loss(self, history: Tensor, target: Tensor) -> Tensor:
        if self.loss_name == "ce":
            return F.cross_entropy(self.model.scores(history), target)
        n = self.model.n_items
        offsets = torch.randint(1, n, (target.shape[0], self.num_negatives), device=target.device)
        negatives = (target.unsqueeze(1) + offsets) % n  # uniform over items != target
        logits = self.model.candidate_scores(history, torch.cat([target.unsqueeze(1), negatives], 1))
        if self.loss_name == "bpr":
            return -F.logsigmoid(logits[:, :1] - logits[:, 1:]).mean()
        return F.cross_entropy(logits, torch.zeros_like(target))  # sampled_softmax

    def sampled_negatives_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """A batch with drawn negatives [B, W] (-1 = empty): positive and negative logits from one
        user state; ans/amns keep the ``top_k`` pool entries the current model scores highest."""
        from napo_lab.data.negatives import adaptive_top_k
        from napo_lab.models.seqrec.objectives import sampled_loss

        history, target, negatives = batch["history"], batch["target"], batch["negatives"]
        items = torch.cat([target.unsqueeze(1), negatives], dim=1)
        logits = self.model.candidate_scores(history, items)  # -1 ids score 0 (masked below)
        pos, neg = logits[:, 0], logits[:, 1:]
        valid = negatives >= 0
        keep = adaptive_top_k(neg, valid, self.top_k) if self.top_k else None
        return sampled_loss(self.loss_name, pos, neg, valid, keep)

    def training_step(self, batch: tuple[Tensor, Tensor] | dict[str, Tensor], batch_idx: int) -> Tensor:
        if isinstance(batch, dict):
            loss, bsz = self.sampled_negatives_loss(batch), batch["target"].shape[0]
        else:
            loss, bsz = self.compute_loss(*batch), batch[0].shape[0]
        self.log("seqrec/train_loss", loss, on_step=False, on_epoch=True, batch_size=bsz)
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        history, candidates, target_index = batch[:3]
        self._val_scores.append(self.model.candidate_scores(history, candidates).detach().cpu())
        self._val_targets.append(target_index.cpu())
        if len(batch) > 3:  # the target ids: rank them among all items (full-catalogue, pessimistic ties)
            scores = self.model.scores(history).detach()
            target = batch[3].to(scores.device).long()
            t = scores.gather(1, target.unsqueeze(1))
            self._val_full_ranks.append(((scores > t).sum(1) + (scores == t).sum(1)).cpu())

    def on_validation_epoch_end(self) -> None:
        from napo_lab.metrics.ranking import ranking_metrics

        scores = torch.cat(self._val_scores).double().numpy()
        targets = torch.cat(self._val_targets).numpy()
        self._val_scores.clear()
        self._val_targets.clear()
        metrics = {k: float(v) for k, v in ranking_metrics(scores, targets, ks=(1, 5, 10)).items()}
        if self._val_full_ranks:
            ranks = torch.cat(self._val_full_ranks).double()
            self._val_full_ranks.clear()
            metrics["full/hr@10"] = float((ranks <= 10).double().mean())
            metrics["full/ndcg@10"] = float(torch.where(ranks <= 10, 1.0 / torch.log2(ranks + 1.0),
                                                        torch.zeros_like(ranks)).mean())
        for k, v in metrics.items():
            self.log(f"seqrec/val_{k}", v, prog_bar=k == self.monitor)
        value = metrics[self.monitor]
        log.info(
            "seqrec epoch %d: val %s=%.4f hr@1=%.4f", self.current_epoch, self.monitor, value, metrics["hr@1"]
        )
        if not np.isfinite(self.best_score) or value > self.best_score:
            # Keep the best weights in memory: no checkpoint files to clean up or race on.
            self.best_score, self.best_epoch, self.best_metrics = value, self.current_epoch, metrics
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay,
                                 betas=(0.9, self.adam_beta2))
