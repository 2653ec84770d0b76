"""`python -m benchmarks.run --quick` end to end (tiny model, in-process): CSV, markdown and PNG."""

from __future__ import annotations

import csv
import re

import torch

from benchmarks.run import EVAL_NAMES, main


def test_quick_benchmark_writes_csv_markdown_and_png(tmp_path, cache_dir, capsys):
    out = tmp_path / "bench"
    threads = torch.get_num_threads()
    try:
        code = main(["--quick", "--ks", "1,3", "--napo-batch", "2", "--eval-users", "2", "--ref-examples", "2",
                     "--max-rounds", "1", "--timed-steps", "2", "--cache-dir", str(cache_dir), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # the benchmark sets 1; leave the session as it was
    assert code == 0
    rows = list(csv.DictReader(open(out / "bench.csv")))
    variants = {r["variant"] for r in rows}
    assert {"shared_prefix K=1", "duplicate K=3", "no cache", "warm cache", *EVAL_NAMES.values()} <= variants
    assert all(float(r["median_s"]) > 0 for r in rows)
    md = (out / "bench.md").read_text()
    assert "| target | measured | met |" in md and "shared-prefix >= 3x faster" in md
    assert "eval=both: one prompt pass faster than two passes" in md and "answers equal" in md
    packing = [r for r in rows if r["section"] == "sft packing"]
    assert len(packing) == 2 and all(float(r["median_cpu_s"]) > 0 for r in packing)
    assert packing[0]["variant"].startswith("one prompt per row (before): padding ")
    assert packing[1]["variant"].startswith("packed, pack_tokens=4096: padding 0.0%")  # one row per batch: no padding
    assert "SFT packing: packed step faster than one prompt per row" in md
    # issue 17 item 1: efficiency against the GEMM peak measured in the same run, one row each, with met/missed
    for name in ("SFT step: achieved FLOP/s", "S-DPO shared-prefix step (K=3, B=4): achieved FLOP/s >= 50%",
                 "S-DPO shared-prefix step (K=3, one prompt): achieved FLOP/s (no target)",
                 "ranking evaluation: achieved FLOP/s", "generation evaluation: achieved FLOP/s",
                 "ranking time <= 1.25x its token-count bound relative to generation"):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name}"))
        assert line.endswith(("| met |", "| MISSED |", "| n/a |")), line
        if "bound" not in name:  # judged against the GEMM rate each task measured beside it
            assert "GEMM beside it, median of " in line, line
            if name.startswith(("SFT", "S-DPO")):  # one rate beside each of the two timed steps
                assert "GEMM beside it, median of 2;" in line, line
    assert "Matmul peak (best n x n GEMM, torch threads 1): fp32 " in md and "load average" in md
    assert any(r["variant"].startswith("SFT step") and float(r["median_cpu_s"]) > 0 for r in rows)
    assert (out / "bench.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "| section | variant |" in printed
    assert "shared_prefix K=1" in printed and "s CPU (median of 2: " in printed  # two timed steps per variant
    assert re.search(r"page faults \d+k, \d+k\)", printed)  # each timed step's minor page faults
