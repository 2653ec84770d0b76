"""The study's config (experiment=negative_sampling) passes the recipe's validation for every dataset and
sampler it sweeps, so a multirun does not fail job by job; and the study script runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from napo_lab.recipe.validate import validate
from tests.conftest import compose_cfg

ROOT = Path(__file__).resolve().parents[2]
SAMPLERS = ["rns", "pns", "bns", "mns", "ans", "amns"]


@pytest.mark.parametrize("dataset", ["goodreads", "lastfm", "movielens_temporal"])
def test_study_config_validates_for_every_swept_cell(tmp_path, dataset):
    for sampler in SAMPLERS:
        cfg = compose_cfg(["experiment=negative_sampling", f"dataset={dataset}", f"neg_sampler={sampler}",
                           "seed=3"], tmp_path / "out", tmp_path / "cache")
        validate(cfg)  # raises ConfigError listing every problem
        assert cfg.model.name == "sasrec" and cfg.neg_sampler.sampler == sampler
        assert cfg.model.monitor == "full/hr@10" and cfg.model.adam_beta2 == 0.98
        assert OmegaConf.select(cfg, "logger._target_") is None  # logger=none: no logger object


@pytest.mark.slow  # six SASRec runs on the synthetic dataset through the real script: `make test-slow`
def test_study_script_as_documented(tmp_path):
    """`bash experiments/run_negative_sampling.sh` with only size-shrinking settings (one dataset, one seed,
    one epoch, a small model): six runs, then report.md / report.csv / runs.csv / wall_time.txt."""
    env = {**os.environ, "DATASETS": "synthetic", "SEEDS": "0", "JOBS": "1", "EPOCHS": "1",
           "REPORT": str(tmp_path / "report"), "PYTHON": sys.executable, "NAPO_LAB_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", "experiments/run_negative_sampling.sh", str(tmp_path / "multirun"),
                           "model.hidden_size=8", "model.num_layers=1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    assert sorted(runs["sampler"]) == sorted(SAMPLERS) and set(runs["dataset"]) == {"synthetic"}
    assert len(runs) == 6 and runs["hr@10"].between(0, 1).all() and runs["balance"].between(1 / 3 - 1e-3, 1).all()
    assert "wall time:" in proc.stdout
    for name in ("report.md", "report.csv", "wall_time.txt"):
        assert (tmp_path / "report" / name).stat().st_size > 0
