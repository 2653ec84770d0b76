"""`strategy=ddp` for real: two CPU processes (gloo) started by Lightning from the CLI.

The DDP run starts from a cold cache, so rank 0 trains the SFT adapter under the cache lock while
rank 1 (started inside that training) must not wait on the lock. It trains NAPO with share=reuse,
whose negative pool is all-gathered across the ranks. A single-process run with the same global batch
(4 = 1 x 4 = 2 x 2) and the same data order must then give the same losses and the same LoRA weights:
the index sampler hands rank r the rows r, r+2, ... of the single-process order, so the two ranks'
local batches together are the single-process batch.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sweep_helpers import describe, read_json, run_cli

# fp32 and the answer-only SFT start: the equivalence below was measured under these (bf16 autocast or a
# different SFT start changes rounding, which Adam amplifies over two steps at lr 1e-2).
COMMON = ["model=tiny_random", "dataset=synthetic", "trainer.precision=32-true", "sft.history_weight=0",
          "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
          "logger=none", "loss=napo", "loss.objective.share=reuse", "sft.train_limit=4", "sft.batch_size=2",
          "sft.lr=1e-2", "pref.train_limit=8", "pref.lr=1e-2", "pref.max_steps=2", "pref.global_batch_size=4",
          "dataset.test_limit=2", "eval.max_new_tokens=1", "data.eval_batch_size=2", "seqrec.max_epochs=1"]


def _pref_losses(run_dir) -> list[float]:
    rows = pd.read_csv(run_dir / "train_metrics.csv")
    return rows[rows["stage"] == "pref"]["train/loss"].tolist()


def test_ddp_two_processes_equal_single_process(tmp_path):
    cache = tmp_path / "cache"
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    proc = run_cli([*COMMON, "strategy=ddp", "trainer.devices=2", "pref.batch_size=2", f"hydra.run.dir={ddp}"],
                   tmp_path, cache, timeout=300)
    assert proc.returncode == 0, describe(proc)
    assert (ddp / "train_ddp_process_1.log").is_file(), "Lightning did not start a second process"
    info = read_json(ddp / "run_info.json")
    assert info["status"] == "ok", info
    metrics = read_json(ddp / "metrics.json")
    assert metrics["sft/reused_cache"] == 0.0  # SFT trained under DDP, cached by rank 0 only
    assert len([p for p in (cache / "sft_adapters").iterdir() if p.is_dir()]) == 1

    proc = run_cli([*COMMON, "trainer.devices=1", "pref.batch_size=4", f"hydra.run.dir={single}"], tmp_path, cache,
                   timeout=300)
    assert proc.returncode == 0, describe(proc)
    assert read_json(single / "metrics.json")["sft/reused_cache"] == 1.0  # same SFT adapter as the DDP run

    # Logged DDP losses are the mean over ranks (sync_dist), i.e. the loss of the global batch.
    ddp_losses, single_losses = _pref_losses(ddp), _pref_losses(single)
    assert len(ddp_losses) == len(single_losses) == 2
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5, abs=1e-5), (ddp_losses, single_losses)
    a, b = load_file(ddp / "adapter" / "adapter_model.safetensors"), load_file(single / "adapter" /
                                                                               "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"LoRA weights differ by {worst}"
    sft = load_file(next(p for p in (cache / "sft_adapters").iterdir() if p.is_dir()) / "adapter_model.safetensors")
    assert any(not torch.equal(a[k], sft[k]) for k in a), "the preference stage did not move the weights"
