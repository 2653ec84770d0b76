"""Thread settings under contention (issue 17, item 4): an SFT step alone and beside a CPU-bound busy
loop that the benchmark starts and stops itself, for several torch / OpenMP thread settings.

Each setting runs in a fresh worker process (OpenMP reads ``OMP_WAIT_POLICY`` once, at start-up). In
the worker, after a warm-up step, rounds alternate: one step alone, then one step while a busy-loop
process (a pure-Python loop) runs; the order flips every round. The slow-down of a
setting is median(step beside the busy loop) / median(step alone), in wall seconds (contention costs
waiting, which CPU seconds do not show).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Setup, make_optimizer, train_step

ROOT = Path(__file__).resolve().parent.parent
TARGET = 2.5


def settings() -> list[dict[str, Any]]:
    """Today's default (torch's: one thread per core, OpenMP's active wait), the same with passive wait,
    and one thread fewer than the cores (napo_lab's ``cpu_threads: auto``)."""
    cores = os.cpu_count() or 1
    out = [
        {"name": f"{cores} threads (torch default), OMP active wait", "threads": cores, "env": {}},
        {
            "name": f"{cores} threads, OMP_WAIT_POLICY=PASSIVE",
            "threads": cores,
            "env": {"OMP_WAIT_POLICY": "PASSIVE"},
        },
    ]
    if cores > 1:
        out.append(
            {"name": f"{cores - 1} thread(s) = cores - 1 (cpu_threads=auto)", "threads": cores - 1, "env": {}}
        )
    return out


# A CPU-bound loop that ends by itself when its parent is gone or after 10 minutes (never an orphan).
BUSY = """import os, time
parent, end = os.getppid(), time.time() + 600
while os.getppid() == parent and time.time() < end:
    for _ in range(100000):
        pass
"""


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUSY], stdin=subprocess.DEVNULL)


def run_contention(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    """The worker side: SFT steps alone and beside a busy loop, alternating."""
    import torch

    loss = setup.loss("sft")
    module = setup.module(loss, "shared_prefix", "sft")
    opt = make_optimizer(module)
    batch = setup.train_batch(0, int(spec["batch"]), history=True)
    # warm-up on the measured batch itself: the first full-size step pays one-off costs (kernels compiled
    # for its matrix shapes, the heap's first touch) that would land on the first "alone" step
    train_step(module, opt, batch, setup.device, setup.autocast)
    alone, busy = [], []
    for r in range(int(spec["rounds"])):
        for contended in (False, True) if r % 2 == 0 else (True, False):
            proc = busy_loop() if contended else None
            try:
                if proc:
                    time.sleep(0.2)  # let it get scheduled
                wall, _ = train_step(module, opt, batch, setup.device, setup.autocast)
            finally:
                if proc:
                    proc.kill()
                    proc.wait()
            (busy if contended else alone).append(wall)
    return {
        "alone": alone,
        "busy": busy,
        "threads": torch.get_num_threads(),
        "wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load": os.getloadavg(),
    }


def measure(args, mode: str) -> list[dict[str, Any]]:
    """The parent side: one worker per setting; returns one result per setting."""
    from benchmarks.worker import PREFIX

    out = []
    for s in settings():
        spec = {
            "task": "contention",
            "mode": mode,
            "device": "cpu",
            "cache_dir": args.cache_dir,
            "threads": s["threads"],
            "batch": args.contention_batch,
            "rounds": args.contention_rounds,
        }
        env = {**os.environ, "NAPO_BENCH_WORKER": "1", "OMP_NUM_THREADS": str(s["threads"]), **s["env"]}
        if "OMP_WAIT_POLICY" not in s["env"]:
            env.pop("OMP_WAIT_POLICY", None)
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=1800,
            env=env,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PREFIX)]
        if proc.returncode or not lines:
            out.append({**s, "failed": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            continue
        res = json.loads(lines[-1][len(PREFIX) :])
        out.append({**s, **res})
        print(
            f"  contention: {s['name']:<48} alone {res['alone']} s, beside a busy loop {res['busy']} s "
            f"(load {', '.join(f'{x:.2f}' for x in res['load'])})",
            flush=True,
        )
    return out


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def targets(results: list[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    for i, r in enumerate(results):
        if "failed" in r:
            rows.append((f"SFT step beside one busy process: {r['name']}", f"FAILED: {r['failed']}", False))
            continue
        a, b = _median(r["alone"]), _median(r["busy"])
        is_default = "cpu_threads=auto" in r["name"] or ((os.cpu_count() or 1) == 1 and i == 0)
        rows.append(
            (
                f"SFT step beside one busy process slows by <= {TARGET}x: {r['name']}"
                + (" [napo_lab default]" if is_default else " (alternative)"),
                f"{b / a:.2f}x (alone {a:.2f} s, beside the busy loop {b:.2f} s wall)",
                (b / a <= TARGET) if is_default else None,
            )
        )
    return rows
