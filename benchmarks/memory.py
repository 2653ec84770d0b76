"""Peak memory of the default job and of a zero-shot ranking evaluation (issue 17, item 3): before
(glibc's and oneDNN's own behaviour, NAPO's activations kept, 16 prompts per evaluation batch:
``malloc.trim=false cpu_kernel_cache=null pref.activation_checkpointing=null data.eval_batch_size=16``),
after (napo_lab's default: free heap pages given back after each training stage, every 8th training
batch and each evaluation batch; oneDNN's kernel cache capped at 64; the preference stage recomputes
its activations in the backward pass; 8 prompts per evaluation batch) and with the memory-for-CPU option
``malloc.mmap_threshold_kb=128``. The LoRA layers' input casting under autocast (bit-identical, no
setting) is off in all three.

Each command runs as a user runs it (``python -m napo_lab.run ...``) in a fresh process with a fresh
cache (the converted model linked in, so nothing is converted twice), so the SFT adapter, SASRec and
the zero-shot reference are computed as on a first run. The job is shrunk in examples only (its batch
shapes, and so its per-step memory, are the default job's). Peak resident memory and CPU seconds come
from ``wait4`` on the process. Targets (issue 17): default job <= 2.5 GB, zero-shot ranking <= 1.5 GB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from napo_lab.memory import ONEDNN_CACHE_ENV

ROOT = Path(__file__).resolve().parent.parent
TARGETS_MB = {"job": 2500.0, "zero-shot": 1500.0}
SETTINGS = (
    ("before", "before: glibc and oneDNN as they are, no recomputation, evaluation batch 16 (malloc.trim=false "
     "cpu_kernel_cache=null pref.activation_checkpointing=null data.eval_batch_size=16)",
     ["malloc.trim=false", "cpu_kernel_cache=null", "pref.activation_checkpointing=null", "data.eval_batch_size=16"]),
    ("after", "after: napo_lab's default (malloc.trim=true, trim_every_n_steps=8, cpu_kernel_cache=64, "
     "pref.activation_checkpointing=1, data.eval_batch_size=8)", []),
    ("mmap128", "option: malloc.mmap_threshold_kb=128", ["malloc.mmap_threshold_kb=128"]),
)


def commands(mode: str) -> list[tuple[str, str, list[str]]]:
    """(key, label, argv after ``python -m``) of the measured commands."""
    tiny = ["model=tiny_random"] if mode == "quick" else []
    users = "dataset.n_test_users=4" if mode == "quick" else "dataset.n_test_users=16"
    return [
        ("job", f"default job (`napo_lab.run`, sft.train_limit=40 pref.train_limit=16 {users})",
         ["napo_lab.run", *tiny, "sft.train_limit=40", "pref.train_limit=16", users]),
        ("zero-shot", "zero-shot `napo_lab.evaluate eval=ranking` (100 test users)" if mode != "quick"
         else "zero-shot `napo_lab.evaluate eval=ranking` (4 test users)",
         ["napo_lab.evaluate", *tiny, "eval=ranking", *(["dataset.n_test_users=4"] if mode == "quick" else [])]),
    ]


def run_one(argv: list[str], settings: list[str], cache_dir: str, threads: int | None) -> dict[str, Any]:
    """Run one command in a fresh process and cache; its peak RSS (MB) and CPU seconds."""
    tmp = Path(tempfile.mkdtemp(prefix="napo_bench_mem"))
    try:
        models = Path(cache_dir) / "models"
        if models.is_dir():
            (tmp / "cache").mkdir()
            (tmp / "cache" / "models").symlink_to(models.resolve())
        # Without oneDNN's cache variable (a benchmark worker in this process may have set it): each
        # setting's cpu_kernel_cache decides.
        env = {**{k: v for k, v in os.environ.items() if k != ONEDNN_CACHE_ENV},
               "NAPO_LAB_CACHE_DIR": str(tmp / "cache"), "WANDB_MODE": "offline"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        log = tmp / "stderr.txt"
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv, *settings, "logger=csv",
                 f"hydra.run.dir={tmp / 'run'}"],
                cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=fh)
            _, status, usage = os.wait4(proc.pid, 0)  # this process's own peak RSS and CPU time
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            last = log.read_text().strip().splitlines()[-1:]
            return {"failed": f"exit {proc.returncode}: {last}"}
        return {"peak_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_command(key: str, label: str, argv: list[str], cache_dir: str, threads: int | None) -> list[dict[str, Any]]:
    """One command under every malloc setting (before first), each in its own fresh process."""
    out = []
    for name, setting, overrides in SETTINGS:
        res = run_one(argv, overrides, cache_dir, threads)
        out.append({"key": key, "command": label, "setting": setting, "malloc": name, **res})
        shown = f"FAILED {res['failed']}" if "failed" in res else (
            f"peak {res['peak_mb']:.0f} MB, {res['cpu_s']:.1f} CPU s")
        print(f"  memory: {label} | {setting}: {shown}", flush=True)
    return out


def measure(args, mode: str) -> list[dict[str, Any]]:
    """Every command of ``commands(mode)`` under every malloc setting."""
    return [row for key, label, argv in commands(mode)
            for row in measure_command(key, label, argv, args.cache_dir, args.threads)]


def targets(results: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """One row per command: peak before -> after (and the option), the target judged on napo_lab's default."""
    rows: list[tuple[str, str, bool | None]] = []
    for key, goal in TARGETS_MB.items():
        runs = {r["malloc"]: r for r in results if r["key"] == key}
        if not runs:
            continue
        before, after, option = runs.get("before", {}), runs.get("after", {}), runs.get("mmap128", {})
        name = f"peak resident memory <= {goal / 1000:.1f} GB: {(after or before)['command']}"
        if "peak_mb" not in after:
            rows.append((name, f"FAILED: {after.get('failed', 'not run')}", False))
            continue
        was = f"{before['peak_mb']:.0f} MB before" if "peak_mb" in before else "before: not measured"
        cpu = (f"; CPU {after['cpu_s']:.0f} s vs {before['cpu_s']:.0f} s = {after['cpu_s'] / before['cpu_s']:.2f}x"
               if "cpu_s" in before else "")
        opt = (f"; malloc.mmap_threshold_kb=128: {option['peak_mb']:.0f} MB, CPU {option['cpu_s'] / after['cpu_s']:.2f}x"
               " of the default" if "peak_mb" in option else "")
        rows.append((name, f"{after['peak_mb']:.0f} MB after ({was}{cpu}{opt})", after["peak_mb"] <= goal))
    return rows
