"""The study commands of experiments/results/seeds20/README.md, run as written with only the study
script's size knobs (SEEDS=0, EXTRA=one epoch): the sweeps run, every job writes its metrics, and the
report part writes the tables with paired intervals against the baseline."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_data

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "experiments" / "results" / "seeds20" / "README.md"
CF = "bash experiments/run_seeds20_study.sh multirun/seeds20 cf_mf cf_lightgcn report"
PD = "bash experiments/run_seeds20_study.sh multirun/seeds20 preferdiff pd_size pd_lr report"


def _run(command: str, tmp_path: Path) -> Path:
    assert command in README.read_text(), f"{README} no longer shows: {command}"
    args = shlex.split(command)
    out = tmp_path / "study"
    args[2] = str(out)  # the output directory: a temporary one instead of multirun/seeds20
    env = {**os.environ, "SEEDS": "0", "EXTRA": "++model.max_epochs=1 logger=none", "PYTHON": sys.executable,
           "NAPO_LAB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)  # a hang guard only: 10 jobs + 2 reports, minutes on a free 2-core machine
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "wall time" in proc.stdout and "commit" in proc.stdout
    return out


def _methods(root: Path) -> dict[str, dict]:
    runs = {}
    for info in root.rglob("run_info.json"):
        data = json.loads(info.read_text())
        runs[f"{data['method']}|{info.parent.name}"] = json.loads((info.parent / "metrics.json").read_text())
    return runs


@needs_data
@pytest.mark.slow
def test_cf_study_command(tmp_path):
    out = _run(CF, tmp_path)
    runs = _methods(out / "cf")
    assert sorted(k.split("|")[0] for k in runs) == sorted(
        f"{m}{s}" for m in ("bprmf", "lightgcn") for s in ("", "+ts-resample", "+ts-weight"))
    assert all(m["test/full/n"] == 938 for m in runs.values())  # ML-100K under ITIPR's protocol
    paired = (out / "report" / "cf_bprmf" / "report.md").read_text()
    assert "Paired differences against `bprmf`" in paired and "full/recall@20" in paired


@pytest.mark.slow
def test_preferdiff_study_command(tmp_path):
    out = _run(PD, tmp_path)
    runs = _methods(out / "pd")
    assert sorted(k.split("|")[0] for k in runs) == ["preferdiff"] * 5 + ["sasrec"]
    assert all("test/full/recall@5" in m and "test/rank/hr@1" in m for m in runs.values())
    report = (out / "report" / "pd" / "report.md").read_text()
    assert "Paired differences against `sasrec`" in report and "hidden_size=256" in report
