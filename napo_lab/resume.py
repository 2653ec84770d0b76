"""Finding the run to continue after a crash.

``resume=auto`` (default): rerunning the same command continues the newest interrupted run with the
same overrides, if its process is gone and it left a checkpoint; otherwise a fresh run starts.
``resume=true``: the same, but it is an error when there is nothing to continue.
``resume=<run dir>``: continue that run.  ``resume=false``: always start afresh.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

IGNORED = ("resume=", "debug=", "hydra.", "paths.output_dir=")


def comparable(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if not o.startswith(IGNORED))


def _alive(info: dict) -> bool:
    """Is the process that wrote this run_info still running (same host)?"""
    pid, host = info.get("pid"), info.get("host")
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    return int(pid) != os.getpid()


def has_checkpoint(run_dir: Path) -> bool:
    return any(Path(run_dir, "checkpoints").glob("*/last.ckpt"))


def find_interrupted(roots: list[Path], overrides: list[str], exclude: Path | None = None) -> Path | None:
    """Newest run dir under ``roots`` with the same overrides that did not finish and can continue."""
    want = comparable(overrides)
    best: tuple[float, Path] | None = None
    for root in roots:
        if not root.is_dir():
            continue
        for info_path in root.glob("**/run_info.json"):
            run_dir = info_path.parent
            if exclude is not None and run_dir.resolve() == exclude.resolve():
                continue
            try:
                info = json.loads(info_path.read_text())
            except (OSError, ValueError):
                continue
            if info.get("status") == "ok" or comparable(info.get("overrides") or []) != want:
                continue
            if _alive(info) or not has_checkpoint(run_dir):
                continue
            stamp = info_path.stat().st_mtime
            if best is None or stamp > best[0]:
                best = (stamp, run_dir)
    return best[1] if best else None


def resolve_run_dir(resume, new_dir: Path, overrides: list[str], roots: list[Path]) -> Path:
    """The directory this run should write to: ``new_dir`` or an interrupted run to continue."""
    value = str(resume).lower() if resume is not None else "false"
    if value in ("false", "none", "0", "no"):
        return new_dir
    if value not in ("auto", "true", "1", "yes"):
        target = Path(str(resume)).expanduser()
        if not (target / "run_info.json").is_file():
            raise FileNotFoundError(f"resume={resume}: {target} is not a napo_lab run directory "
                                    "(no run_info.json); give the directory of the run to continue.")
        return target
    found = find_interrupted(roots, overrides, exclude=new_dir)
    if found is None:
        if value != "auto":
            raise FileNotFoundError("resume=true: no interrupted run with these overrides and a checkpoint "
                                    f"under {', '.join(map(str, roots))}; pass resume=<run dir> instead.")
        return new_dir
    log.info("Continuing the interrupted run in %s (resume=false starts afresh)", found)
    return found
