"""`python -m napo_lab.report` on a synthetic sweep directory."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from napo_lab.report import main, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(root: Path, sub: str, method: str, dataset: str, seed: int, metrics: dict | None,
         status: str = "ok", error: str | None = None, overrides: list | None = None,
         curves: bool = False) -> Path:
    d = root / sub
    d.mkdir(parents=True)
    info = {"method": method, "dataset": dataset, "seed": seed, "model": "tiny", "status": status,
            "error": error, "wall_time_s": 1.0, "commit": None,
            "overrides": overrides if overrides is not None else [f"loss={method}", f"dataset={dataset}", f"seed={seed}"]}
    (d / "run_info.json").write_text(json.dumps(info))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    if curves:
        rows = [{"step": s, "stage": "sft", "train/loss": 1.0} for s in range(3)]
        rows += [{"step": s, "stage": "pref", "train/loss": 0.5,
                  "train/rewards/margin": 0.1 * s + seed, "train/rewards/accuracy": 0.5 + 0.01 * s}
                 for s in range(3, 10)]
        pd.DataFrame(rows).to_csv(d / "train_metrics.csv", index=False)
    return d


def _metrics(hr1, avg_pop, head, tail, rank_hr1=0.3):
    return {"test/hr@1": hr1, "test/hr@1_valid": hr1 + 0.1, "test/valid_ratio": 0.9, "test/n": 100,
            "test/rank/hr@1": rank_hr1, "test/rank/mrr": 0.5, "test/pop/avg_pop@1": avg_pop,
            "test/band/head/hr@1": head, "test/band/tail/hr@1": tail, "test/band/head/n": 60,
            "val/hr@1": 0.99}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    _run(root, "0", "sdpo", "lastfm", 1, _metrics(0.5, 120.0, 0.6, 0.2), curves=True)
    _run(root, "1", "sdpo", "lastfm", 2, _metrics(0.7, 100.0, 0.8, 0.4), curves=True)
    _run(root, "2", "dpo", "lastfm", 1, _metrics(0.55, 90.0, 0.7, 0.1), curves=True)
    _run(root, "3", "napo", "lastfm", 1, None, status="failed", error="Traceback...\nCUDA out of memory")
    _run(root, "x/4", "napo", "goodreads", 1, _metrics(0.3, 50.0, 0.4, 0.2))
    _run(root, "5", "zero_shot", "goodreads", 1, {"test/hr@1": 0.02})
    return root


def test_report_numbers(sweep: Path):
    report = write_report(sweep)
    assert report == sweep.resolve() / "report.md"
    csv = pd.read_csv(sweep / "report.csv")
    assert list(csv[["dataset", "method"]].itertuples(index=False, name=None)) == [
        ("goodreads", "napo"), ("goodreads", "zero_shot"), ("lastfm", "dpo"), ("lastfm", "sdpo")]
    sdpo = csv[csv["method"] == "sdpo"].iloc[0]
    assert sdpo["n_runs"] == 2 and sdpo["test/hr@1:n"] == 2
    assert sdpo["test/hr@1:mean"] == pytest.approx(0.6)
    assert sdpo["test/hr@1:std"] == pytest.approx(math.sqrt(0.02))  # ddof=1
    assert sdpo["test/pop/avg_pop@1:mean"] == pytest.approx(110.0)
    dpo = csv[csv["method"] == "dpo"].iloc[0]
    assert np.isnan(dpo["test/hr@1:std"]) and dpo["test/hr@1:n"] == 1
    zs = csv[csv["method"] == "zero_shot"].iloc[0]
    assert zs["test/rank/hr@1:n"] == 0 and np.isnan(zs["test/rank/hr@1:mean"])
    assert "test/n:mean" not in csv and "test/band/head/n:mean" not in csv  # counts are not columns
    assert not any(c.startswith("val/") for c in csv.columns)
    cols = [c[: -len(":mean")] for c in csv.columns if c.endswith(":mean")]
    assert cols[:3] == ["test/hr@1", "test/hr@1_valid", "test/valid_ratio"]

    md = report.read_text()
    assert "**0.6000 ± 0.1414**" in md  # best lastfm hr@1
    assert "0.5500 ± -" in md  # one seed
    assert "**90.00 ± -**" in md  # avg_pop: lower is better
    assert "**0.3000 ± -**" in md  # best within goodreads, not across datasets
    assert "0.0200 ± -" in md and "**0.0200" not in md
    assert "CUDA out of memory" in md and "| `3` |" in md
    assert "sampled" in md
    for name in ("hr1_by_method.png", "hr1_by_band.png", "training_curves.png"):
        path = sweep / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        img = imread(path)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0  # not blank
        assert f"]({name})" in md


def test_missing_plot_data_is_skipped(tmp_path: Path):
    root = tmp_path / "s"
    _run(root, "a", "sasrec", "lastfm", 1, {"test/rank/hr@1": 0.22})
    out = tmp_path / "out"
    report = write_report(root, out=out)
    assert report.parent == out.resolve()
    assert (out / "hr1_by_method.png").stat().st_size > 0  # falls back to rank/hr@1
    assert not (out / "hr1_by_band.png").exists() and not (out / "training_curves.png").exists()
    md = report.read_text()
    assert "hr1_by_band.png skipped" in md and "training_curves.png skipped" in md


def test_single_run_dir_and_variants(tmp_path: Path):
    root = tmp_path / "s"
    _run(root, "a", "sdpo", "lastfm", 1, {"test/hr@1": 0.4}, overrides=["loss=sdpo", "seed=1", "loss.beta=0.5"])
    _run(root, "b", "sdpo", "lastfm", 2, {"test/hr@1": 0.6}, overrides=["loss=sdpo", "seed=2", "loss.beta=0.5"])
    _run(root, "c", "sdpo", "lastfm", 1, {"test/hr@1": 0.9}, overrides=["loss=sdpo", "seed=1", "loss.beta=2"])
    write_report(root)
    csv = pd.read_csv(root / "report.csv")
    assert sorted(csv["method"]) == ["sdpo [loss.beta=0.5]", "sdpo [loss.beta=2]"]
    assert csv.set_index("method").loc["sdpo [loss.beta=0.5]", "test/hr@1:mean"] == pytest.approx(0.5)
    write_report(root / "c")  # a run dir on its own is a sweep of one
    assert pd.read_csv(root / "c" / "report.csv")["method"].tolist() == ["sdpo"]


def test_all_failed_still_reports(tmp_path: Path):
    _run(tmp_path, "a", "sdpo", "lastfm", 1, None, status="failed", error="boom")
    md = write_report(tmp_path).read_text()
    assert "boom" in md and "No `test/` metrics" in md


def test_cli_no_runs_exit_2(tmp_path: Path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no run directory" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2


def test_cli_module_entry(sweep: Path, tmp_path: Path):
    out = tmp_path / "cli_out"
    proc = subprocess.run([sys.executable, "-m", "napo_lab.report", str(sweep), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.md").is_file() and (out / "report.csv").is_file()
    empty = subprocess.run([sys.executable, "-m", "napo_lab.report", str(tmp_path / "nothing")],
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "Traceback" not in empty.stderr


def test_wandb_offline(sweep: Path, tmp_path: Path, monkeypatch):
    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    write_report(sweep, out=tmp_path / "o", use_wandb=True, wandb_project="napo_lab_test")
    assert not list(wandb_dir.rglob("offline-run-*"))  # written under the sweep dir, not $WANDB_DIR or ./wandb
    runs = list((sweep / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))
    media = list(runs[0].rglob("*.png"))
    assert len(media) == 3


def test_time_and_count_metrics_are_never_bold(tmp_path: Path):
    root = tmp_path / "s"
    fast = {"test/hr@1": 0.5, "test/gen_seconds_per_user": 1.0, "test/n_valid": 10, "train/seconds": 5.0}
    slow = {"test/hr@1": 0.4, "test/gen_seconds_per_user": 9.0, "test/n_valid": 20, "train/seconds": 50.0}
    _run(root, "a", "dpo", "lastfm", 1, fast)
    _run(root, "b", "sdpo", "lastfm", 1, slow)
    md = write_report(root).read_text()
    assert "**0.5000 ± -**" in md  # quality metrics still get their best marked
    assert "**1.0000" not in md and "**9.0000" not in md  # neither the fastest nor the slowest time


def test_run_control_overrides_are_not_method_variants(tmp_path: Path):
    """A job rerun with resume=false (or another logger) is the same method: its seeds pool and pair."""
    root = tmp_path / "s"
    _run(root, "a", "sdpo", "lastfm", 1, {"test/hr@1": 0.4}, overrides=["loss=sdpo", "seed=1"])
    _run(root, "b", "sdpo", "lastfm", 2, {"test/hr@1": 0.6}, overrides=["loss=sdpo", "seed=2", "resume=false",
                                                                        "logger=none"])
    write_report(root)
    csv = pd.read_csv(root / "report.csv")
    assert csv["method"].tolist() == ["sdpo"]
    assert csv.set_index("method").loc["sdpo", "test/hr@1:mean"] == pytest.approx(0.5)
