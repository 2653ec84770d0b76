"""End to end with the tiny random Llama: SFT, then S-DPO from the cached SFT adapter.

Checks what a user relies on: LoRA weights move, base weights do not, the reference adapter is the
frozen SFT adapter (not the base model), metrics.json / predictions / run_info are written, and the
W&B offline run holds the logged metrics.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from napo_lab.lit.loggers import read_offline_run
from napo_lab.models.adapters import REFERENCE_ADAPTER, attach_reference
from napo_lab.models.llm import base_state, lora_state
from napo_lab.recipe import build
from napo_lab.recipe.stages import Job, fit_stage, sft_adapter
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg


def test_sft_then_sdpo_tiny(tmp_path, monkeypatch):
    # SFT run through the real entry point (Hydra-composed config, Lightning Trainer, PEFT). Its own
    # cache: plain SFT shares the SFT-adapter cache, and this test needs it to really train.
    cache_dir = tmp_path / "cache"
    sft_dir = tmp_path / "sft"
    cfg = compose_cfg([*TINY, "loss=sft"], sft_dir, cache_dir)
    execute(cfg)
    metrics = json.loads((sft_dir / "metrics.json").read_text())
    for key in ("test/hr@1", "test/hr@1_valid", "test/valid_ratio", "train/seconds"):
        assert key in metrics
    assert 0.0 <= metrics["test/hr@1"] <= metrics["test/valid_ratio"] <= 1.0
    assert metrics["sft/reused_cache"] == 0.0  # trained here, then cached for the preference stage
    info = json.loads((sft_dir / "run_info.json").read_text())
    assert info["status"] == "ok" and info["method"] == "sft" and info["dataset"] == "synthetic"
    pred = pd.read_parquet(sft_dir / "predictions_test.parquet")
    assert len(pred) == 8 and set(pred.columns) >= {"user", "target", "candidates", "generated", "matched"}
    assert (sft_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert "train/loss" in pd.read_csv(sft_dir / "train_metrics.csv").columns

    # S-DPO stage by hand, to inspect weights: SFT adapter (trained or cached) -> reference copy.
    cfg = compose_cfg([*TINY, "loss=sdpo"], tmp_path / "sdpo", cache_dir)
    (tmp_path / "sdpo").mkdir()
    prepared = build.data(cfg)
    model, tok = build.model(cfg)
    job = Job(cfg, prepared, model, tok, tmp_path / "sdpo")
    base_before = base_state(model)
    sft_path, _ = sft_adapter(job)
    sft_weights = lora_state(model)
    attach_reference(model, sft_path)
    ref_before = lora_state(model, REFERENCE_ADAPTER)
    assert ref_before and all(torch.equal(ref_before[k.replace(".default.", f".{REFERENCE_ADAPTER}.")], v)
                              for k, v in sft_weights.items())
    module = fit_stage(job, "pref", build.loss(cfg))
    after = lora_state(model)
    assert any(not torch.equal(after[k], sft_weights[k]) for k in after), "LoRA weights did not change"
    ref_after = lora_state(model, REFERENCE_ADAPTER)
    assert all(torch.equal(ref_after[k], ref_before[k]) for k in ref_before), "the reference moved"
    base_after = base_state(model)
    assert all(torch.equal(base_after[k], base_before[k]) for k in base_before if REFERENCE_ADAPTER not in k)
    # The reference is the SFT model, not the base model with adapters off.
    batch = next(iter(module.datamodule.train_dataloader()))
    ref_lp, _ = module._reference(batch, cross=False)
    with model.disable_adapter(), torch.no_grad():
        base_lp, _, _ = module._score(batch, cross=False)
    assert not torch.allclose(ref_lp, base_lp)


def test_sdpo_run_reuses_sft_cache_and_logs_wandb_offline(tmp_path, cache_dir):
    out = tmp_path / "run"
    cfg = compose_cfg([*TINY, "loss=sdpo", "logger=wandb"], out, cache_dir)
    execute(cfg)
    first = json.loads((out / "metrics.json").read_text())
    assert "test/hr@1" in first
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "expected one offline W&B run in the run dir"
    logged = read_offline_run(runs[0])
    summary = logged["summary"]
    assert "train/loss" in summary and summary["test/hr@1"] == pytest.approx(first["test/hr@1"])
    assert not [a for a in logged["artifacts"] if a["type"] == "model"]  # the adapter Artifact is opt-in
    assert any(k.startswith("train/rewards/") for k in summary)
    # Second run with the same SFT settings reuses the cached SFT adapter.
    out2 = tmp_path / "run2"
    execute(compose_cfg([*TINY, "loss=sdpo"], out2, cache_dir))
    assert json.loads((out2 / "metrics.json").read_text())["sft/reused_cache"] == 1.0
