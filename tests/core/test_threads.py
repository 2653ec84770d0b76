"""cpu_threads: torch's CPU threads of a job (docs/performance.md, "Threads under contention")."""

from __future__ import annotations

import os

import pytest

from napo_lab.errors import UserError
from napo_lab.recipe.build import cpu_threads
from tests.cli.cli_helpers import describe, run_module


def test_auto_leaves_one_core_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads("auto") == max(1, len(os.sched_getaffinity(0)) - 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads("auto") is None  # torch already follows OMP_NUM_THREADS
    assert cpu_threads(2) == 2 and cpu_threads(None) is None


@pytest.mark.parametrize("bad", [0, -1, "two", True, 1.5])
def test_a_bad_setting_is_a_user_error(bad):
    with pytest.raises(UserError, match="cpu_threads=.* is not a thread count: use auto, null"):
        cpu_threads(bad)


def test_a_bad_setting_exits_2_with_one_line(tmp_path, cache_dir):
    proc = run_module(
        "napo_lab.run",
        ["cpu_threads=two", "model=tiny_random", "dataset=synthetic", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        cache_dir,
    )
    assert proc.returncode == 2, describe(proc)
    assert "cpu_threads='two' is not a thread count" in proc.stderr and "Traceback" not in proc.stderr
