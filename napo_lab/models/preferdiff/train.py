"""Training PreferDiff on a prepared dataset: AdamW, the PreferDiff loss, early stopping on a
validation metric (by default full-catalogue Recall@5, as the public trainer does), best epoch kept.

The public trainer has no learning-rate schedule and no gradient clipping in its loop (its
``warmup_steps`` and ``max_grad_norm`` settings are read by nothing); neither is used here.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from napo_lab.metrics.full_ranking import per_row_metrics, relevant_ranks
from napo_lab.metrics.ranking import ranking_metrics
from napo_lab.models.preferdiff.config import PreferDiffConfig
from napo_lab.models.preferdiff.model import PreferDiff
from napo_lab.models.seqrec.train import _accelerator, isolated_global_state, split_arrays

log = logging.getLogger(__name__)


def build_preferdiff(cfg: PreferDiffConfig | Any, n_items: int) -> PreferDiff:
    cfg = PreferDiffConfig.from_cfg(cfg)
    model = PreferDiff(n_items, **cfg.model_kwargs())
    model.config = {"n_items": int(n_items), **cfg.training_key()}
    model.sample_seed = cfg.eval_seed
    return model


class PreferDiffLightning(L.LightningModule):
    def __init__(self, model: PreferDiff, cfg: PreferDiffConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, Tensor] | None = None
        self.best_metrics: dict[str, float] = {}
        self._ranks: list[np.ndarray] = []
        self._cand: list[tuple[np.ndarray, np.ndarray]] = []

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        history, target = batch
        if target.shape[0] < 2:  # the negatives are the other rows: a 1-row tail batch has none
            return None
        out = self.model.training_loss(history, target)
        bs = target.shape[0]
        self.log("preferdiff/train_loss", out.loss, on_step=False, on_epoch=True, batch_size=bs)
        self.log("preferdiff/l_pos", out.l_pos, on_step=False, on_epoch=True, batch_size=bs)
        self.log("preferdiff/l_neg", out.l_neg, on_step=False, on_epoch=True, batch_size=bs)
        return out.loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        history, target, candidates, target_index = batch
        scores = self.model.scores(history).float().cpu()
        exclude = history.cpu().numpy() if self.cfg.mask_history else None
        self._ranks.extend(relevant_ranks(scores, target.cpu().numpy(), exclude))
        self._cand.append((torch.gather(scores, 1, candidates.cpu()).double().numpy(), target_index.cpu().numpy()))

    def on_validation_epoch_end(self) -> None:
        rows = per_row_metrics(self._ranks, (5, 10))
        metrics = {f"full/{k}": float(np.nanmean(v)) for k, v in rows.items()}
        scores = np.concatenate([c[0] for c in self._cand])
        targets = np.concatenate([c[1] for c in self._cand])
        metrics |= {f"rank/{k}": float(v) for k, v in ranking_metrics(scores, targets, (1, 5, 10)).items()
                    if k != "n"}
        self._ranks.clear()
        self._cand.clear()
        for k, v in metrics.items():
            self.log(f"preferdiff/val_{k}", v, prog_bar=k == self.cfg.monitor)
        value = metrics[self.cfg.monitor]
        log.info("preferdiff epoch %d: val %s=%.4f", self.current_epoch, self.cfg.monitor, value)
        if value > self.best_score:
            self.best_score, self.best_epoch, self.best_metrics = value, self.current_epoch, metrics
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)


def train_preferdiff(prepared: Any, cfg: PreferDiffConfig | Any, logger: Any = None) -> tuple[PreferDiff, dict]:
    """Train on ``prepared.split("train")``; keep the epoch with the best validation ``cfg.monitor``.

    Deterministic for a given seed on CPU. Returns the model (CPU, eval mode) and an info dict."""
    cfg = PreferDiffConfig.from_cfg(cfg)
    val_split = cfg.val_split or prepared.manifest.get("default_val_split", "val")
    with isolated_global_state(cfg.num_threads), tempfile.TemporaryDirectory(prefix="preferdiff-") as root:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        model = build_preferdiff(cfg, prepared.n_items)
        train = split_arrays(prepared.split("train"), cfg.max_len)
        val = split_arrays(prepared.split(val_split), cfg.max_len)
        train_loader = DataLoader(
            TensorDataset(torch.from_numpy(train["history"]), torch.from_numpy(train["target"])),
            batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed))
        val_loader = DataLoader(
            TensorDataset(*(torch.from_numpy(val[k]) for k in ("history", "target", "candidates", "target_index"))),
            batch_size=512)
        lit = PreferDiffLightning(model, cfg)
        early_stop = L.pytorch.callbacks.EarlyStopping(
            monitor=f"preferdiff/val_{cfg.monitor}", mode="max", patience=cfg.patience)
        trainer = L.Trainer(
            accelerator=_accelerator(cfg.device), devices=1, max_epochs=cfg.max_epochs, callbacks=[early_stop],
            logger=logger if logger is not None else False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            deterministic=True, default_root_dir=root)
        start = time.perf_counter()
        trainer.fit(lit, train_loader, val_loader)
        seconds = time.perf_counter() - start
    model = lit.model.cpu()
    if lit.best_state is not None:
        model.load_state_dict(lit.best_state)
    model.sample_seed = cfg.eval_seed
    info = {"best_epoch": lit.best_epoch, "epochs_run": trainer.current_epoch, "train_seconds": seconds,
            "val_split": val_split, "best_val": lit.best_metrics}
    log.info("preferdiff trained in %.1fs, best epoch %d, val %s", seconds, lit.best_epoch, lit.best_metrics)
    return model.eval(), info
