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
    [pos, negatives]. Negatives are drawn uniformly and never equal the target."""

    def __init__(
        self,
        model: SeqRecModel,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        loss: str = "ce",
        num_negatives: int = 1,
        monitor: str = "ndcg@10",
    ) -> None:
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.loss_name, self.num_negatives, self.monitor = loss, num_negatives, monitor
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

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self.compute_loss(*batch)
        self.log("seqrec/train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        history, candidates, target_index = batch
        self._val_scores.append(self.model.candidate_scores(history, candidates).detach().cpu())
        self._val_targets.append(target_index.cpu())

    def on_validation_epoch_end(self) -> None:
        from napo_lab.metrics.ranking import ranking_metrics

        scores = torch.cat(self._val_scores).double().numpy()
        targets = torch.cat(self._val_targets).numpy()
        self._val_scores.clear()
        self._val_targets.clear()
        metrics = {k: float(v) for k, v in ranking_metrics(scores, targets, ks=(1, 5, 10)).items()}
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
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
