"""cpu_threads: torch's CPU threads of a job (docs/performance.md, "Threads under contention")."""

from __future__ import annotations

import os

import pytest

from napo_lab.errors import UserError
from napo_lab.memory import ONEDNN_CACHE_ENV, cpu_kernel_cache
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


def test_cpu_kernel_cache_sets_onednns_variable_unless_the_environment_does(monkeypatch):
    monkeypatch.delenv(ONEDNN_CACHE_ENV, raising=False)
    assert cpu_kernel_cache(None) == "oneDNN default" and ONEDNN_CACHE_ENV not in os.environ
    assert cpu_kernel_cache(64) == "64" and os.environ[ONEDNN_CACHE_ENV] == "64"
    monkeypatch.setenv(ONEDNN_CACHE_ENV, "8")
    assert cpu_kernel_cache(64) == f"8 (from {ONEDNN_CACHE_ENV})" and os.environ[ONEDNN_CACHE_ENV] == "8"


@pytest.mark.parametrize("bad", [-1, 70000, "many", True, 2.5])
def test_a_bad_cpu_kernel_cache_is_a_user_error(bad, monkeypatch):
    monkeypatch.delenv(ONEDNN_CACHE_ENV, raising=False)
    with pytest.raises(UserError, match="cpu_kernel_cache=.* is not a kernel count from 0 to 65536"):
        cpu_kernel_cache(bad)
    assert ONEDNN_CACHE_ENV not in os.environ  # refused: nothing set


def test_a_bad_setting_exits_2_with_one_line(tmp_path, cache_dir):
    proc = run_module(
        "napo_lab.run",
        ["cpu_threads=two", "model=tiny_random", "dataset=synthetic", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        cache_dir,
    )
    assert proc.returncode == 2, describe(proc)
    assert "cpu_threads='two' is not a thread count" in proc.stderr and "Traceback" not in proc.stderr


# --- malloc.mmap_threshold_kb and malloc.trim (docs/performance.md, "Memory") ---------------------------------------
from napo_lab import memory  # noqa: E402
from napo_lab.memory import configure, malloc_mmap_threshold, release_memory  # noqa: E402

_HEAP = """
import ctypes, sys
from napo_lab.memory import configure, release_memory
configure({"trim": sys.argv[2] == "on", "mmap_threshold_kb": None if sys.argv[1] == "null" else int(sys.argv[1])})
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmRSS")).split()[1]) // 1024
def touched(n):
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    return p
libc.free(touched(8 << 20))    # an 8 MiB buffer freed: glibc's moving threshold climbs to 8 MiB
before = rss()
blocks, pins = [], []
for _ in range(100):           # 100 x 4 MiB of activations, each followed by a smaller long-lived
    blocks.append(touched(4 << 20))  # object (too large for any free fragment) that pins the heap above it
    pins.append(touched(100 << 10))
for p in blocks:
    libc.free(p)
kept = rss() - before
released = release_memory()
print(kept, rss() - before, released)
"""


def _heap(threshold: str, trim: str) -> tuple[int, int, bool]:
    """In a fresh process, fragment the heap as the job did: (MiB kept after the frees, MiB kept after
    ``release_memory``, whether it released pages)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _HEAP, threshold, trim], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    kept, after_release, released = proc.stdout.split()
    return int(kept), int(after_release), released == "True"


@pytest.mark.skipif(not os.path.exists("/proc/self/status") or os.uname().sysname != "Linux", reason="glibc/Linux")
def test_a_fixed_mmap_threshold_gives_freed_activations_back():
    # glibc's default: after one 8 MiB block was freed, 4 MiB blocks come from the heap and stay resident
    kept_default = _heap("null", "off")[0]
    kept_fixed = _heap("128", "off")[0]
    assert kept_default > 300, kept_default  # the failure this setting exists for (400 MiB allocated)
    assert kept_fixed < 40, kept_fixed


def test_mmap_threshold_settings():
    assert malloc_mmap_threshold(None) == "glibc default"
    assert malloc_mmap_threshold(128) in ("128 KiB", "unchanged (no mallopt in this C library)")


@pytest.mark.parametrize("bad", [0, 8, 40000, "big", True, 1.5])
def test_a_bad_mmap_threshold_is_a_user_error(bad):
    with pytest.raises(UserError, match="malloc.mmap_threshold_kb=.* is not a size in KiB from 16 to 32768"):
        malloc_mmap_threshold(bad)


def test_a_bad_mmap_threshold_exits_2_before_anything_runs(tmp_path, cache_dir):
    proc = run_module(
        "napo_lab.run",
        ["malloc.mmap_threshold_kb=8", "model=tiny_random", "dataset=synthetic", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        cache_dir,
    )
    assert proc.returncode == 2, describe(proc)
    assert "malloc.mmap_threshold_kb=8 is not a size in KiB" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="glibc/Linux")
def test_trimming_between_phases_gives_the_heaps_free_pages_back():
    out = {setting: _heap("null", setting)[1:] for setting in ("off", "on")}
    assert out["off"][0] > 300 and out["off"][1] is False  # the same heap, not trimmed: all 400 MiB stay
    assert out["on"][0] < 40 and out["on"][1] is True


def test_malloc_config_is_checked():
    assert configure({"trim": True, "mmap_threshold_kb": None}) == (
        "mmap threshold glibc default, trim between phases and every 8 training batches")
    assert configure({"trim": True, "trim_every_n_steps": 0}) == "mmap threshold glibc default, trim between phases"
    with pytest.raises(UserError, match="malloc.trim='yes' is not true or false"):
        configure({"trim": "yes"})
    for bad in (-1, 2.5, True):
        with pytest.raises(UserError, match=r"malloc.trim_every_n_steps=.* is not a whole number >= 0"):
            configure({"trim_every_n_steps": bad})
    assert memory.TRIM is True and memory.TRIM_EVERY == 0  # a refused setting changed nothing
    configure({"trim": False})
    try:
        assert configure({"trim": False}) == "mmap threshold glibc default, trim off"
        assert release_memory() is False and memory.trim_heap() is False
    finally:
        configure({"trim": True})
    assert memory.TRIM_EVERY == 8


def test_heap_trim_callback_trims_every_nth_training_batch(monkeypatch):
    from napo_lab.lit.callbacks import HeapTrim

    calls = []
    monkeypatch.setattr(memory, "trim_heap", lambda: calls.append(cb.batches) or True)
    monkeypatch.setattr(memory, "TRIM_EVERY", 3)
    cb = HeapTrim()
    for i in range(7):
        cb.on_train_batch_end(None, None, None, None, i)
    assert calls == [3, 6]
    monkeypatch.setattr(memory, "TRIM_EVERY", 0)
    cb.on_train_batch_end(None, None, None, None, 7)
    assert calls == [3, 6]
