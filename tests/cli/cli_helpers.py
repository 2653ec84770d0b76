"""Run napo_lab's commands the way a user does (a subprocess, the real Hydra app) on the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a test adds to a documented command to make it small (never changes what the command does).
SHRINK = ["model=tiny_random", "sft.train_limit=8", "sft.batch_size=4", "pref.train_limit=8", "pref.batch_size=4",
          "dataset.test_limit=4", "dataset.val_limit=4", "eval.max_new_tokens=2", "seqrec.max_epochs=1",
          "data.eval_batch_size=4", "trainer.enable_progress_bar=false"]
# ... and to a collaborative-filtering job (a model group of kind cf: bprmf, lightgcn), whose size is epochs
# and Shapley valuations: 4 epochs with a valuation after the 2nd (one resampling or reweighting round), 2
# orderings per user.
SHRINK_CF = ["model.max_epochs=4", "model.eval_every=2"]
# ... and to a conventional sequential job (kind seqrec: sasrec, gru4rec, caser, preferdiff): one epoch.
SHRINK_SEQ = ["model.max_epochs=1"]
SHRINK_SHAPLEY = ["sampler.warmup_epochs=2", "sampler.refresh_every=2", "sampler.shapley.n_permutations=2"]


def env(cache_dir: Path, **extra: str) -> dict[str, str]:
    out = {**os.environ, "NAPO_LAB_CACHE_DIR": str(cache_dir), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **extra}
    for key in ("WANDB_API_KEY", "NAPO_LAB_DDP_RUN_DIR", "HYDRA_FULL_ERROR", "WANDB_DIR"):
        out.pop(key, None)
    return out


def run_module(module: str, args: list[str], cwd: Path, cache_dir: Path, timeout: int = 600,
               **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env(cache_dir, **extra_env),
                          capture_output=True, text=True, timeout=timeout)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
