"""The contention benchmark (issue 17, item 4): SFT steps alone and beside a busy loop it starts and
stops itself; the target row marks the napo_lab default (cpu_threads=auto) met or missed."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmarks.common import Setup
from benchmarks.contention import run_contention, settings, targets


def children() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def test_steps_alone_and_beside_a_busy_loop_that_is_stopped_again(cache_dir):
    threads = torch.get_num_threads()
    before = children()
    try:
        setup = Setup("quick", "cpu", str(cache_dir), 1).load(with_reference=False)
        res = run_contention(setup, {"batch": 2, "rounds": 2})
    finally:
        torch.set_num_threads(threads)
    assert len(res["alone"]) == 2 and len(res["busy"]) == 2 and min(res["alone"] + res["busy"]) > 0
    assert children() == before  # the busy loops are gone


def test_the_default_setting_is_judged_against_2_5x():
    names = [s["name"] for s in settings()]
    assert any("cpu_threads=auto" in n for n in names) == ((os.cpu_count() or 1) > 1)
    rows = targets(
        [
            {"name": "2 threads (torch default), OMP active wait", "alone": [1.0, 1.2], "busy": [8.0, 9.0]},
            {
                "name": "1 thread(s) = cores - 1 (cpu_threads=auto)",
                "alone": [2.0, 2.0, 2.2],
                "busy": [2.0, 4.0, 5.0],
            },
        ]
    )
    assert rows[0][2] is None and "(alternative)" in rows[0][0] and rows[0][1].startswith("7.73x")
    assert rows[1][2] is True and "[napo_lab default]" in rows[1][0] and rows[1][1].startswith("2.00x")
