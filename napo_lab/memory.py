"""The native libraries' side of memory (docs/performance.md, "Memory"): glibc's mmap threshold, giving
freed heap pages back between phases, and oneDNN's cache of compiled CPU kernels."""

from __future__ import annotations

import functools
import os
from typing import Any

from napo_lab.errors import UserError

#: Whether ``release_memory`` trims the heap (config ``malloc.trim``, set by ``configure``).
TRIM = True

#: Trim after every this many training batches too (config ``malloc.trim_every_n_steps``; 0 = never).
TRIM_EVERY = 8

#: glibc's mallopt parameter number of M_MMAP_THRESHOLD (malloc.h).
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc():
    """The C library (loaded once: ``release_memory`` runs after every evaluation pass)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


#: oneDNN's own environment variable for its kernel cache (read once, at the first kernel it builds).
ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def cpu_kernel_cache(setting: Any) -> str:
    """oneDNN's cache of compiled CPU kernels (config ``cpu_kernel_cache``; docs/performance.md, "Memory"):
    it keeps one kernel, with its buffers, per matrix shape, and every new sequence length is a new shape,
    so over a stage its default capacity (1024) holds hundreds of MB the job never uses again. Sets
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` unless the environment already does (then that wins), so it must
    run before the first matmul. Returns what was done, for the log; null leaves oneDNN's default."""
    if setting is None:
        return "oneDNN default"
    if isinstance(setting, bool) or not isinstance(setting, int) or not 0 <= setting <= 65536:
        raise UserError(f"cpu_kernel_cache={setting!r} is not a kernel count from 0 to 65536: use e.g. "
                        "cpu_kernel_cache=64, or null for oneDNN's default (1024)")
    if os.environ.get(ONEDNN_CACHE_ENV):
        return f"{os.environ[ONEDNN_CACHE_ENV]} (from {ONEDNN_CACHE_ENV})"
    os.environ[ONEDNN_CACHE_ENV] = str(setting)
    return str(setting)


def malloc_mmap_threshold(kib: Any) -> str:
    """Fix glibc's mmap threshold at ``kib`` KiB (config ``malloc.mmap_threshold_kb``; docs/performance.md,
    "Memory"): every allocation at least that large gets its own mapping and goes back to the system
    when freed, and glibc's moving threshold (which climbs to the largest block freed so far, after
    which large buffers come from a heap that small long-lived objects pin) is off. It trades CPU for
    memory: every such buffer is fresh, zeroed pages (128 KiB: SFT step -35% peak, +80% CPU). Returns
    what was done, for the log; null, or a C library without mallopt (musl, macOS), leaves malloc alone."""
    if kib is None:
        return "glibc default"
    if isinstance(kib, bool) or not isinstance(kib, int) or not 16 <= kib <= 32768:
        raise UserError(f"malloc.mmap_threshold_kb={kib!r} is not a size in KiB from 16 to 32768: use e.g. "
                        "malloc.mmap_threshold_kb=128, or null for glibc's own threshold")
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return "unchanged (no mallopt in this C library)"
    if not libc.mallopt(_M_MMAP_THRESHOLD, int(kib) * 1024):
        return "unchanged (mallopt refused it)"
    return f"{kib} KiB"


def trim_heap() -> bool:
    """Give the heap's free pages back (glibc ``malloc_trim``), without a garbage collection: the cheap
    form for inside a training stage (``HeapTrim``). False when trimming is off or not available."""
    libc = _libc() if TRIM else None
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    return bool(libc.malloc_trim(0))


def release_memory() -> bool:
    """Between phases (after a training stage, after an evaluation pass): collect garbage and give the
    heap's free pages back to the system (glibc ``malloc_trim``), so the next phase starts from the
    memory it needs rather than from the high-water mark of the last (config ``malloc.trim``). True when
    pages were released."""
    import gc

    if not TRIM:
        return False
    gc.collect()
    return trim_heap()


def configure(malloc: Any) -> str:
    """Apply the config's ``malloc`` node (``trim``, ``mmap_threshold_kb``); what was done, for the log."""
    global TRIM, TRIM_EVERY
    malloc = malloc or {}
    trim = malloc.get("trim", True)
    if not isinstance(trim, bool):
        raise UserError(f"malloc.trim={trim!r} is not true or false")
    every = malloc.get("trim_every_n_steps", 8)
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise UserError(f"malloc.trim_every_n_steps={every!r} is not a whole number >= 0 (0 = between phases only)")
    threshold = malloc_mmap_threshold(malloc.get("mmap_threshold_kb"))
    TRIM, TRIM_EVERY = trim, every
    when = "off" if not trim else "between phases" + (f" and every {every} training batches" if every else "")
    return f"mmap threshold {threshold}, trim {when}"
