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

#: Longest job directory name a sweep makes (file systems allow 255 bytes per name).
MAX_JOB_DIRNAME = 120


def job_dirname(override_dirname: str) -> str:
    """A sweep job's directory name: its overrides (Hydra's ``override_dirname``), made safe.

    Floats are rounded to 4 significant digits (an Optuna trial's ``beta=0.21153673722318378`` becomes
    ``beta=0.2115``), ``/`` becomes ``_`` (no sub-directories) and a name longer than
    MAX_JOB_DIRNAME is cut. Whenever the name was changed, 8 hex digits of a hash of the full
    overrides are appended, so two jobs never share a directory. The exact overrides are in
    run_info.json."""
    import hashlib
    import re

    def _round(match: re.Match) -> str:
        text = match.group(0)
        return f"{float(text):.4g}" if len(text) > 6 else text

    name = re.sub(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?(?![\w.])", _round, override_dirname)
    name = name.replace("/", "_")
    if len(name) > MAX_JOB_DIRNAME - 9:
        name = name[: MAX_JOB_DIRNAME - 9]
    if name != override_dirname:
        name = f"{name}-{hashlib.sha1(override_dirname.encode()).hexdigest()[:8]}"
    return name or "job"
