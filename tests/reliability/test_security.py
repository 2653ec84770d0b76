"""Secrets never written; remote code never trusted by default; unknown pickles refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from napo_lab import CONF_DIR
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg


def test_wandb_key_never_reaches_files(tmp_path, cache_dir, monkeypatch):
    secret = "wandb-secret-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    execute(compose_cfg([*TINY, "loss=sft", "logger=wandb", f"+logger.wandb.api_key={secret}"], out, cache_dir))
    assert (out / "metrics.json").is_file()
    for path in Path(out).rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), f"the W&B key leaked into {path}"
    assert "<redacted>" in (out / "config.yaml").read_text()


def test_trust_remote_code_is_off_in_every_model_preset():
    names = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for name in names:
            cfg = compose("config", overrides=[f"model={name}"])
            if cfg.model.kind == "llm":
                assert cfg.model.loader.get("trust_remote_code", False) is False, name


def test_unknown_pickle_is_refused(tmp_path):
    from napo_lab.data.prepared import DataError
    from napo_lab.data.safe_pickle import load_known_pickle

    evil = tmp_path / "train_data.df"
    evil.write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94.")
    with pytest.raises(DataError, match="not one of the known published files"):
        load_known_pickle(evil)
