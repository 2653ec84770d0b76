"""Callbacks: heap trimming inside a training stage, a per-step history of the training metrics
(train_metrics.csv in the run dir), and a validation learning curve."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L

from napo_lab import memory


class HeapTrim(L.Callback):
    """Gives the heap's free pages back after every ``malloc.trim_every_n_steps``-th training batch
    (napo_lab.memory; docs/performance.md, "Memory"): freed activation buffers of different sizes
    otherwise keep a stage at the high-water mark of its longest batches. One ``malloc_trim`` walks the
    heap (~0.1 s on SmolLM2), so every 8 batches costs well under 1% of a step."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if memory.TRIM_EVERY and self.batches % memory.TRIM_EVERY == 0:
            memory.trim_heap()


class MetricsHistory(L.Callback):
    """Keeps every logged ``train/*`` value per optimisation step, for reports and plots.

    One instance serves all stages of a run (SFT pre-stage, preference stage); each row records
    its stage so curves of different stages are never drawn on one axis.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.stage = "train"
        self.seconds = 0.0  # training wall time over all stages this callback watched
        self._start = 0.0

    def for_stage(self, stage: str) -> MetricsHistory:
        self.stage = stage
        return self

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds += time.perf_counter() - self._start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        if values:
            self.rows.append({"step": int(trainer.global_step), "stage": self.stage,
                              "epoch": int(trainer.current_epoch), **values})

    def write(self, path: Path) -> None:
        keys = ["step", "stage", "epoch"]
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


class ValidationCurve(L.Callback):
    """After every ``every``-th epoch of a stage, evaluates the model being trained on the val role and
    logs the result as ``curve/<stage>/<metric>`` (loggers and train_metrics.csv), so a run shows how
    its validation metric moved, and epochs can be chosen on validation, never on test.

    ``evaluate()`` returns flat metrics (``val/rank/mrr``, ...); it is built by the recipe (the
    evaluator's rows and metrics, ranking protocol, nothing written). Only rank 0 evaluates.
    """

    def __init__(self, evaluate: Callable[[], dict[str, float]], every: int, history: MetricsHistory | None = None,
                 stage: str = "train"):
        self.evaluate, self.every, self.history, self.stage = evaluate, int(every), history, stage

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every <= 0 or (trainer.current_epoch + 1) % self.every or trainer.global_rank != 0:
            return
        was_training = pl_module.training
        try:
            found = self.evaluate()
        finally:
            pl_module.train(was_training)
        values = {f"curve/{self.stage}/{k}": float(v) for k, v in found.items() if "seconds" not in k}
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)
        if self.history is not None:
            self.history.rows.append({"step": int(trainer.global_step), "stage": self.stage,
                                      "epoch": int(trainer.current_epoch), **values})
