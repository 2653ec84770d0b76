"""`bash experiments/run_cpu_study.sh` as experiments/results/README.md shows it, shrunk to the tiny model
(EXTRA overrides), two objectives and two seeds: it runs every job, then writes the report with the
paired comparison against SFT and non-empty training curves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from matplotlib.image import imread

from napo_lab import CONF_DIR

ROOT_DIR = CONF_DIR.parent

TINY = ("model=tiny_random trainer.enable_progress_bar=false logger=csv sft.train_limit=8 sft.batch_size=4 "
        "sft.lr=1e-2 pref.train_limit=8 pref.batch_size=4 dataset.test_limit=6 eval.max_new_tokens=3 "
        "seqrec.max_epochs=1 data.eval_batch_size=8")


def test_study_script_runs_and_reports_against_sft(tmp_path: Path, cache_dir: Path):
    env = {**os.environ, "EXTRA": TINY, "LOSSES": "sft,dpo", "SEEDS": "0,1", "PYTHON": sys.executable,
           "REPORT_DIR": str(tmp_path / "report"), "NAPO_LAB_CACHE_DIR": str(cache_dir / "study")}
    done = subprocess.run(["bash", "experiments/run_cpu_study.sh", str(tmp_path / "study")], cwd=ROOT_DIR,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wall time:" in done.stdout
    paired = pd.read_csv(tmp_path / "report" / "report_paired.csv")
    assert set(paired["method"]) >= {"dpo"}, paired
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Paired differences against `sft` (test)" in md and "| dpo |" in md, md[:2000]
    assert imread(tmp_path / "report" / "training_curves.png").std() > 0.01
