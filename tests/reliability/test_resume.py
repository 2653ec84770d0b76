"""kill -9 mid-epoch, rerun, and land on the same adapter and metrics as an uninterrupted run."""

from __future__ import annotations

import csv
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
        "sft.lr=1e-2", "dataset.test_limit=4", "eval.max_new_tokens=2", "logger=csv", "eval.references=false",
        "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=2", "checkpoint.keep=true"]


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "napo_lab.run", *ARGS, f"hydra.run.dir={run_dir}", *extra]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NAPO_LAB_CACHE_DIR": str(cache), "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def _bytes(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def _steady(row: dict[str, str]) -> dict[str, str]:
    """A history row without its timings (which differ between any two runs)."""
    return {k: v for k, v in row.items() if "seconds" not in k and "wall" not in k and "per_s" not in k}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_kill9_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    """kill -9, then: a resume with other overrides and a resume=false into the same directory are both
    refused or sent elsewhere without touching the run; the original command continues it, and the
    adapter, metrics and the whole training history equal an uninterrupted run's."""
    # Separate caches: plain SFT shares the SFT-adapter cache, so the second run must not find the first's.
    full = tmp_path / "full"
    subprocess.run(_cmd(full), env=_env(tmp_path / "cache_full"), check=True, capture_output=True, timeout=600)

    run = tmp_path / "runs" / "interrupted"
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
    untouched = _bytes(run)

    # Issue 16.2: a resume with other overrides is refused before any file of the run changes.
    done = subprocess.run(_cmd(tmp_path / "other", f"resume={run}", "sft.lr=0.5"), env=_env(cache_dir),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "sft.lr=0.5" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert _bytes(run) == untouched
    # Issue 16.3: resume=false into the interrupted run's own directory starts clean elsewhere and says so.
    done = subprocess.run(_cmd(run, "resume=false", "eval.protocol=bogus"), env=_env(cache_dir),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and f"this run writes to {run}_1" in done.stderr, done.stderr
    assert "resuming" not in (run.parent / "interrupted_1" / "run.log").read_text()
    assert _bytes(run) == untouched

    # The original command (resume=auto) continues the interrupted run, in its own directory.
    done = subprocess.run(_cmd(run), env=_env(cache_dir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming at epoch 0" in (run / "run.log").read_text()
    assert sorted(p.name for p in run.parent.iterdir()) == ["interrupted", "interrupted_1"]
    a = load_file(str(full / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    assert {k: v for k, v in ma.items() if "seconds" not in k and "wall" not in k} == \
           {k: v for k, v in mb.items() if "seconds" not in k and "wall" not in k}
    # Issue 16.4: the history survives the crash: every step's row, as the uninterrupted run wrote it.
    for name in ("train_metrics.csv", "csv/metrics.csv"):
        rows_a, rows_b = _csv_rows(full / name), _csv_rows(run / name)
        assert len(rows_a) >= 10 and len(rows_a) == len(rows_b), name
        assert [_steady(r) for r in rows_a] == [_steady(r) for r in rows_b], name
    assert (full / "adapter" / "adapter_config.json").read_bytes() == \
           (run / "adapter" / "adapter_config.json").read_bytes()


def test_corrupt_checkpoint_is_refused_with_its_name(tmp_path):
    cache_dir = tmp_path / "cache"  # empty: the SFT stage must train, so it meets the checkpoint
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "sft" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x80\x04not a checkpoint at all")
    (run / "run_info.json").write_text(json.dumps({"status": "failed", "overrides": ARGS}))
    before = _bytes(run)
    done = subprocess.run(_cmd(tmp_path / "x", f"resume={run}"), env=_env(cache_dir), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2
    assert str(ckpt) in done.stderr and "corrupt" in done.stderr
    assert "Traceback" not in done.stderr
    # the refused resume leaves the run as it was (issue 16.2); its run.log records the attempt
    after = _bytes(run)
    assert after.pop("run.log", None) is not None and after == before


@pytest.mark.parametrize("field", ["identity"])
def test_checkpoint_from_another_model_is_refused(tmp_path, field):
    from napo_lab.lit.checkpoint import CheckpointError, check_checkpoint

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "napo_lab": {"identity": "abc", "description": "tiny_random / synthetic"}}, path)
    with pytest.raises(CheckpointError, match="another model"):
        check_checkpoint(path, "def")
    assert check_checkpoint(path, "abc")["napo_lab"]["identity"] == "abc"
