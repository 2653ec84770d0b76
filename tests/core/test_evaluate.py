"""napo_lab.evaluate reproduces a run's own test metrics from its saved adapter; zero-shot row works."""

from __future__ import annotations

import json

from omegaconf import open_dict

from napo_lab.evaluate import adapter_method, evaluate_job
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg, needs_data


def _metrics(path):
    m = json.loads((path / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k.startswith("test/") and "seconds" not in k}


def test_saved_adapter_evaluates_to_the_same_metrics(tmp_path, cache_dir):
    run = tmp_path / "run"
    execute(compose_cfg([*TINY, "loss=sft", "eval.protocol=both"], run, cache_dir))
    ev = tmp_path / "eval"
    cfg = compose_cfg([*TINY, "eval.protocol=both", f"adapter={run / 'adapter'}"], ev, cache_dir)
    with open_dict(cfg):
        cfg.method_name = adapter_method(cfg.adapter)
    execute(cfg, job=evaluate_job)
    assert _metrics(ev) == _metrics(run)
    assert json.loads((ev / "run_info.json").read_text())["method"] == "sft"


def test_zero_shot_row(tmp_path, cache_dir):
    ev = tmp_path / "zs"
    cfg = compose_cfg([*TINY, "eval.protocol=ranking"], ev, cache_dir)
    with open_dict(cfg):
        cfg.method_name = adapter_method(None)
    execute(cfg, job=evaluate_job)
    m = _metrics(ev)
    assert json.loads((ev / "run_info.json").read_text())["method"] == "zero_shot"
    assert 0.0 <= m["test/rank/hr@1"] <= m["test/rank/hr@5"] <= m["test/rank/hr@10"] <= 1.0


@needs_data
def test_lastfm_end_to_end_through_the_cli(tmp_path, cache_dir):
    """`python -m napo_lab.run loss=sft dataset=lastfm` with the tiny model on the real LastFM files."""
    import subprocess
    import sys

    out = tmp_path / "lastfm"
    args = [sys.executable, "-m", "napo_lab.run", "model=tiny_random", "dataset=lastfm", "loss=sdpo",
            "sft.train_limit=8", "pref.train_limit=4", "dataset.test_limit=6", "eval.max_new_tokens=3", "seqrec.max_epochs=1",
            "logger=none", "trainer.enable_progress_bar=false", f"paths.cache_dir={cache_dir}", f"hydra.run.dir={out}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["test/n"] == 6 and {"test/hr@1", "test/hr@1_valid", "test/valid_ratio"} <= set(m)
    assert "test/hr@1" in done.stdout  # the results table
