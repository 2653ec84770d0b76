"""benchmarks/gpu_check.sh on the CPU with the tiny model: every figure line of the GPU check appears,
the three layouts pass the equality check, and the script runs as documented (slow tier)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def check_lines(text: str, ks: list[int]) -> None:
    for prec in ("fp32", "bf16"):
        for layout in ("shared_prefix", "prefix_cache", "duplicate"):
            line = next(ln for ln in text.splitlines() if ln.startswith(f"[equality {prec}] {layout} "))
            assert line.endswith(" OK"), line
    for layout in ("shared_prefix", "prefix_cache", "duplicate"):
        assert re.search(rf"^\[kernel\] {layout} +forward: \S.*; backward: ", text, re.M)
    assert re.search(r"^\[matmul\] bf16 \d+\^3 GEMM: [\d.]+ TFLOP/s", text, re.M)
    for k in ks:
        assert re.search(
            rf"^\[step\] K={k} +batch \d+: [\d.]+ ms/step .* tokens/s .* MFU [\d.]+% .* peak memory \d+ MB",
            text,
            re.M,
        ), text
    assert re.search(
        r"^\[eval\] \d+ users.*ranking [\d.]+ ms/user.*generation [\d.]+ ms/user.*token-count bound "
        r"[\d.]+x",
        text,
        re.M,
    )
    assert re.search(r"^GPU_CHECK PASS in \d+ s", text, re.M)


def test_gpu_check_on_cpu_in_process(capsys, cache_dir):
    from benchmarks.gpu_check import main

    code = main(
        [
            "--device",
            "cpu",
            "--ks",
            "3",
            "--steps",
            "1",
            "--users",
            "2",
            "--max-new-tokens",
            "4",
            "--cache-dir",
            str(cache_dir),
        ]
    )
    assert code == 0
    check_lines(capsys.readouterr().out, [3])


@pytest.mark.slow
def test_gpu_check_script_as_documented(cache_dir):
    """`bash benchmarks/gpu_check.sh --device cpu`, with size-shrinking options only."""
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [
            "bash",
            "benchmarks/gpu_check.sh",
            "--device",
            "cpu",
            "--steps",
            "1",
            "--users",
            "2",
            "--cache-dir",
            str(cache_dir),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    check_lines(proc.stdout, [3, 15])


def test_gpu_check_names_what_is_missing(monkeypatch, capsys):
    import benchmarks.gpu_check as gc

    monkeypatch.setattr(gc, "missing_modules", lambda: ["hydra", "omegaconf"])
    assert gc.main(["--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "missing Python modules ['hydra', 'omegaconf']" in err and "--download-wheels" in err
