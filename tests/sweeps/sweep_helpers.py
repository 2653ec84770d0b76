"""Helpers for the sweep tests: run the real CLI (`python -m napo_lab.run`) in a subprocess with the
tiny model, the synthetic dataset and an isolated cache, and read what the jobs wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Smallest useful jobs: 8 training examples, 4 test users, 2 generated tokens.
TINY_CLI = ["model=tiny_random", "dataset=synthetic", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
            "data.eval_batch_size=4", "sft.train_limit=8", "sft.batch_size=4", "sft.lr=1e-2", "pref.train_limit=8",
            "pref.batch_size=4", "pref.lr=1e-2", "dataset.test_limit=4", "eval.max_new_tokens=2",
            "seqrec.max_epochs=1"]


def fixed_keys_excluded(fixed: list[str]) -> str:
    """Name job dirs only by what varies: exclude the fixed overrides' keys from override_dirname."""
    keys = [o.split("=", 1)[0].lstrip("+") for o in fixed]
    keys += ["paths.cache_dir", "paths.data_dir", "logger", "debug", "hydra.launcher.n_jobs"]
    return f"hydra.job.config.override_dirname.exclude_keys=[{','.join(keys)}]"


def run_cli(args: list[str], cwd: Path, cache_dir: Path, timeout: int = 240,
            module: str = "napo_lab.run") -> subprocess.CompletedProcess:
    env = {**os.environ, "NAPO_LAB_CACHE_DIR": str(cache_dir), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_API_KEY", None)
    env.pop("NAPO_LAB_DDP_RUN_DIR", None)
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def job_dirs(sweep: Path) -> dict[str, Path]:
    """Job directory name -> path, for every job of a sweep (a directory holding run_info.json)."""
    return {p.parent.name: p.parent for p in sorted(sweep.glob("*/run_info.json"))}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
