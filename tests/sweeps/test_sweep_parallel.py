"""Parallel local jobs with the joblib launcher preset (`hydra/launcher=parallel`), and a 2-trial
Optuna search with the S-DPO preset (`hparams_search=sdpo_optuna`)."""

from __future__ import annotations

import math

import pytest
import yaml
from sweep_helpers import TINY_CLI, describe, fixed_keys_excluded, job_dirs, read_json, run_cli


def test_joblib_sweep_over_objectives_trains_sft_once(tmp_path):
    """Two preference objectives run at once in two worker processes with a cold cache: one job trains
    the SFT adapter (under the cache's file lock), the other waits and reuses it."""
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    proc = run_cli(["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *TINY_CLI, fixed_keys_excluded(TINY_CLI),
                    "logger=none", "loss=dpo,sdpo", f"hydra.sweep.dir={sweep}"], tmp_path, cache)
    assert proc.returncode == 0, describe(proc)
    jobs = job_dirs(sweep)
    assert sorted(jobs) == ["loss=dpo", "loss=sdpo"], describe(proc)
    infos = {name: read_json(path / "run_info.json") for name, path in jobs.items()}
    assert all(i["status"] == "ok" for i in infos.values()), infos
    assert len({i["pid"] for i in infos.values()}) == 2, "the jobs did not run in separate worker processes"
    reused = sorted(read_json(path / "metrics.json")["sft/reused_cache"] for path in jobs.values())
    assert reused == [0.0, 1.0], "SFT must be trained by exactly one job and reused by the other"
    adapters = [p for p in (cache / "sft_adapters").iterdir() if p.is_dir()]
    assert len(adapters) == 1 and (adapters[0] / "adapter_model.safetensors").is_file(), adapters


def test_optuna_search_two_trials(tmp_path, cache_dir):
    sweep = tmp_path / "search"
    fixed = [*TINY_CLI, "dataset.val_limit=4", "hparams_search=sdpo_optuna"]
    proc = run_cli([*fixed, fixed_keys_excluded(fixed), "logger=none", "hydra.sweeper.n_trials=2",
                    "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep}"], tmp_path, cache_dir)
    assert proc.returncode == 0, describe(proc)
    jobs = job_dirs(sweep)
    assert len(jobs) == 2, describe(proc)
    values = []
    for path in jobs.values():
        info = read_json(path / "run_info.json")
        assert info["status"] == "ok" and info["method"] == "sdpo", info
        # the trial's sampled hyper-parameters, exactly (the directory name rounds floats and adds a hash)
        params = {k: v for k, v in (o.split("=", 1) for o in info["overrides"]) if k.startswith("loss.")}
        assert set(params) == {"loss.objective.beta", "loss.num_negatives"}, info["overrides"]
        assert 0.1 <= float(params["loss.objective.beta"]) <= 5.0 and int(params["loss.num_negatives"]) in (1, 3, 5, 7)
        cfg = yaml.safe_load((path / "config.yaml").read_text())
        assert cfg["loss"]["num_negatives"] == int(params["loss.num_negatives"])
        assert cfg["optimized_metric"] == "val/hr@1"  # the preset's: select on validation, not test
        metrics = read_json(path / "metrics.json")
        assert "val/hr@1" in metrics and "test/hr@1" in metrics
        values.append(metrics["val/hr@1"])
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    assert math.isfinite(results["best_value"]) and results["best_value"] == pytest.approx(max(values))
