"""Callbacks: a per-step history of the training metrics (train_metrics.csv in the run dir)."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import lightning as L


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
