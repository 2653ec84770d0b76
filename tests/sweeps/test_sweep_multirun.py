"""A real multirun of the CLI: `-m loss=sft,dpo seed=0,1,-1` with the tiny model and W&B offline.

seed=-1 is an invalid value (seeds are >= 0): validation refuses it before anything loads, so those two
jobs fail inside the run. Checked: one directory per job named by its overrides, the failed jobs recorded as
failed while the others finish, the sweep's exit status, one offline W&B run per job in the sweep's
group, and `napo_lab.report` on the sweep dir.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from sweep_helpers import TINY_CLI, describe, fixed_keys_excluded, job_dirs, read_json, run_cli

from napo_lab.lit.loggers import read_offline_run
from napo_lab.report import main as report_main


def _wandb_run_bytes(run_dir) -> bytes:
    """The offline run's transaction log; the run record (name, group, config) is near its start."""
    return next(run_dir.glob("run-*.wandb")).read_bytes()


def test_multirun_jobs_dirs_failures_wandb_and_report(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *TINY_CLI, fixed_keys_excluded(TINY_CLI), "logger=wandb", "loss=sft,dpo", "seed=0,1,-1",
                    f"hydra.sweep.dir={sweep}"], tmp_path, cache_dir)
    # A failed job is recorded and returns NaN; the sweep itself finishes and exits 0.
    assert proc.returncode == 0, describe(proc)
    jobs = job_dirs(sweep)
    assert len(jobs) == 6, f"{sorted(jobs)}\n{describe(proc)}"
    for name, path in jobs.items():
        # named by the job's overrides (Hydra's override_dirname: sorted key=value pairs)
        parts = dict(p.split("=", 1) for p in name.split(","))
        assert set(parts) == {"loss", "seed"}, name
        info = read_json(path / "run_info.json")
        assert parts["loss"] == info["method"] and int(parts["seed"]) == info["seed"]
        assert f"loss={parts['loss']}" in info["overrides"] and f"seed={parts['seed']}" in info["overrides"]
        if info["seed"] < 0:
            assert info["status"] == "failed" and info["error"], info
            assert not (path / "metrics.json").exists()
            continue
        assert info["status"] == "ok", info
        metrics = read_json(path / "metrics.json")
        assert math.isfinite(metrics["test/hr@1"])
        # each ok job is its own offline W&B run, grouped by the sweep
        runs = list((path / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, name
        log = _wandb_run_bytes(runs[0])
        assert f"sweep-{sweep.name}".encode() in log, "the job's W&B run is not in the sweep's group"
        assert f"{parts['loss']}-synthetic-seed{parts['seed']}".encode() in log  # its own run name
        summary = read_offline_run(runs[0])["summary"]
        assert summary["test/hr@1"] == metrics["test/hr@1"]
    assert sum(read_json(p / "run_info.json")["status"] == "failed" for p in jobs.values()) == 2

    # The report over the sweep dir: one row per (dataset, method), 2 seeds each, failures listed.
    assert report_main([str(sweep)]) == 0
    table = pd.read_csv(sweep / "report.csv")
    rows = {(r["dataset"], r["method"]): r for _, r in table.iterrows()}
    assert set(rows) == {("synthetic", "sft"), ("synthetic", "dpo")}, table
    for (_, method), row in rows.items():
        assert row["n_runs"] == 2 and row["test/hr@1:n"] == 2
        ok = [read_json(jobs[f"loss={method},seed={s}"] / "metrics.json")["test/hr@1"] for s in (0, 1)]
        assert row["test/hr@1:mean"] == pytest.approx(sum(ok) / 2)
    md = (sweep / "report.md").read_text()
    assert "4 ok, 2 failed" in md and "`loss=dpo,seed=-1`" in md and "`loss=sft,seed=-1`" in md
