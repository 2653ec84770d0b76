"""The run directory contract: the files a run writes and the report reads (one place for the names)."""

from __future__ import annotations

CONFIG = "config.yaml"                # the resolved config (secrets redacted)
RUN_INFO = "run_info.json"            # method, dataset, seed, model, status, error, overrides, commit, ...
METRICS = "metrics.json"              # flat metrics: "<role>/<metric>", "train/seconds", ...
TRAIN_METRICS = "train_metrics.csv"   # one row per optimisation step: step, stage, epoch, train/*
ADAPTER = "adapter"                   # the trained LoRA adapter (LLM runs)
CHECKPOINTS = "checkpoints"           # checkpoints/<stage>/last.ckpt while the run is not finished
OWNER = ".napo_lab_run"               # created with O_EXCL when a run claims its directory (napo_lab.resume)

#: Stage names, as written in train_metrics.csv, checkpoint folders, logs and the report.
SFT, PREF = "sft", "pref"
STAGES = (SFT, PREF)
#: Evaluation roles (``eval.splits``); which prepared split each is comes from dataset.<role>_split.
ROLES = ("val", "test")


def predictions_file(role: str) -> str:
    """``predictions_<role>.parquet``: one row per evaluated user (see napo_lab.metrics.table)."""
    return f"predictions_{role}.parquet"
