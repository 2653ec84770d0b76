"""kill -9 mid-epoch, rerun, and land on the same adapter and metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ARGS = ["model=tiny_random", "dataset=synthetic", "loss=sft", "sft.train_limit=40", "sft.batch_size=4",
        "sft.lr=1e-2", "dataset.test_limit=4", "eval.max_new_tokens=2", "logger=none",
        "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=2", "checkpoint.keep=true"]


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "napo_lab.run", *ARGS, f"hydra.run.dir={run_dir}", *extra]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NAPO_LAB_CACHE_DIR": str(cache), "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def test_kill9_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    # Separate caches: plain SFT shares the SFT-adapter cache, so the second run must not find the first's.
    full = tmp_path / "full"
    subprocess.run(_cmd(full), env=_env(tmp_path / "cache_full"), check=True, capture_output=True, timeout=600)

    run = tmp_path / "interrupted"
    cache_dir = tmp_path / "cache_interrupted"
    proc = subprocess.Popen(_cmd(run), env=_env(cache_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoints" / "sft" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the kill"
    saved = torch.load(ckpt, weights_only=True)
    step_at_kill = saved["global_step"]
    assert 0 < step_at_kill < 10, f"the kill should land mid-epoch (step {step_at_kill} of 10)"
    assert not (run / "metrics.json").exists()
    # The checkpoint holds only trainable weights (LoRA), not the frozen base model.
    assert saved["state_dict"] and all("lora_" in k or k.startswith("loss_fn.") for k in saved["state_dict"])

    done = subprocess.run(_cmd(tmp_path / "new", f"resume={run}"), env=_env(cache_dir), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "new").exists(), "the resumed run must write into the interrupted run's dir"
    a = load_file(str(full / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if "seconds" not in k and "wall" not in k} == \
           {k: v for k, v in mb.items() if "seconds" not in k and "wall" not in k}


def test_corrupt_checkpoint_is_refused_with_its_name(tmp_path):
    cache_dir = tmp_path / "cache"  # empty: the SFT stage must train, so it meets the checkpoint
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "sft" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x80\x04not a checkpoint at all")
    (run / "run_info.json").write_text(json.dumps({"status": "failed", "overrides": []}))
    done = subprocess.run(_cmd(tmp_path / "x", f"resume={run}"), env=_env(cache_dir), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2
    assert str(ckpt) in done.stderr and "corrupt" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("field", ["identity"])
def test_checkpoint_from_another_model_is_refused(tmp_path, field):
    from napo_lab.lit.checkpoint import CheckpointError, check_checkpoint

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "napo_lab": {"identity": "abc", "description": "tiny_random / synthetic"}}, path)
    with pytest.raises(CheckpointError, match="another model"):
        check_checkpoint(path, "def")
    assert check_checkpoint(path, "abc")["napo_lab"]["identity"] == "abc"
