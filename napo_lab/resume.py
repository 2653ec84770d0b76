"""Choosing a run's directory: a fresh one of its own, or the interrupted run it continues.

Fresh runs. Every run claims its directory atomically (``claim_run_dir``): the directory Hydra would
use (``hydra.run.dir``) when it is new or empty, else the first free ``<dir>_1``, ``<dir>_2``, ...
A directory is claimed by creating its owner file (``.napo_lab_run``) with O_EXCL, so two runs
started in the same second never share one, and a directory that already holds anything (another
run, or files of yours) is never written into. The Hydra callback ``ClaimRunDir`` does this before
Hydra creates the directory, opens run.log or writes .hydra/.

Resuming. ``resume=auto`` (default): rerunning the same command continues the newest *interrupted*
run with the same overrides: its status is ``running`` with its process gone (killed: kill -9, out of
memory, a lost node) or ``interrupted`` (Ctrl-C), and it left a checkpoint. A run that failed (an
error) or finished is never taken over; a fresh run starts instead.
``resume=true``: the same, but it is an error when there is nothing to continue.
``resume=<run dir>``: continue that run (interrupted or failed, not finished and not still running),
with the same overrides as it was started with; anything else is refused before a file changes.
``resume=false``: always a fresh run (in a directory of its own, see above).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path

from napo_lab.errors import ConfigError
from napo_lab.rundir import OWNER, RUN_INFO

log = logging.getLogger(__name__)

IGNORED = ("resume=", "debug=", "hydra.", "paths.output_dir=")
#: run_info.json statuses a run can be continued from by resume=auto
RESUMABLE = ("running", "interrupted")
RANK_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


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


def _info(run_dir: Path) -> dict | None:
    try:
        info = json.loads(Path(run_dir, RUN_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def find_interrupted(roots: list[Path], overrides: list[str], exclude: Path | None = None) -> Path | None:
    """Newest run dir under ``roots`` with the same overrides that was interrupted and can continue."""
    want = comparable(overrides)
    best: tuple[float, Path] | None = None
    for root in roots:
        if not root.is_dir():
            continue
        for info_path in root.glob(f"**/{RUN_INFO}"):
            run_dir = info_path.parent
            if exclude is not None and run_dir.resolve() == exclude.resolve():
                continue
            info = _info(run_dir)
            if info is None or info.get("status") not in RESUMABLE:
                continue
            if comparable(info.get("overrides") or []) != want or _alive(info) or not has_checkpoint(run_dir):
                continue
            stamp = info_path.stat().st_mtime
            if best is None or stamp > best[0]:
                best = (stamp, run_dir)
    return best[1] if best else None


def check_resumable(target: Path, overrides: list[str], resume) -> None:
    """Refuse (ConfigError, nothing written) to continue ``target`` when it finished, is still running,
    or was started with other overrides than this command."""
    info = _info(target)
    if info is None:
        raise ConfigError(f"resume={resume}: {target} is not a napo_lab run directory (no readable {RUN_INFO}); "
                          "give the directory of the run to continue.")
    if info.get("status") == "ok":
        raise ConfigError(f"resume={resume}: the run in {target} finished (status ok); there is nothing to "
                          "continue. Start a fresh run with resume=false.")
    if _alive(info):
        raise ConfigError(f"resume={resume}: the run in {target} is still running (pid {info.get('pid')}); "
                          "wait for it or stop it first.")
    theirs, ours = comparable(info.get("overrides") or []), comparable(overrides)
    if theirs != ours:
        only_theirs = [o for o in theirs if o not in ours]
        only_ours = [o for o in ours if o not in theirs]
        raise ConfigError(
            f"resume={resume}: the run in {target} was started with other overrides; it had "
            f"{' '.join(only_theirs) or 'nothing more'}, this command has {' '.join(only_ours) or 'nothing more'}. "
            f"Rerun with the run's own overrides (listed in {target / RUN_INFO}), or start afresh with "
            "resume=false. Nothing in that run was changed.")


def resolve_run_dir(resume, new_dir: Path, overrides: list[str], roots: list[Path]) -> Path:
    """The directory this run should write to: ``new_dir`` or an interrupted run to continue."""
    value = str(resume).lower() if resume is not None else "false"
    if value in ("false", "none", "0", "no"):
        return new_dir
    if value not in ("auto", "true", "1", "yes"):
        target = Path(str(resume)).expanduser()
        check_resumable(target, overrides, resume)
        return target
    found = find_interrupted(roots, overrides, exclude=new_dir)
    if found is None:
        if value != "auto":
            raise FileNotFoundError("resume=true: no interrupted run with these overrides and a checkpoint "
                                    f"under {', '.join(map(str, roots))}; pass resume=<run dir> instead.")
        return new_dir
    log.info("Continuing the interrupted run in %s (resume=false starts afresh)", found)
    return found


# -- fresh run directories ----------------------------------------------------------------------
def _try_claim(path: Path) -> bool:
    """Make ``path`` ours if it is new or empty: O_EXCL on the owner file decides between racing runs."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file of that name
        return False
    if any(path.iterdir()):
        return False
    try:
        fd = os.open(path / OWNER, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
    return True


def claim_run_dir(path: Path | str, key: str = "hydra.run.dir") -> Path:
    """``path`` if it is new or empty, else the first free ``<path>_<n>``; created and claimed atomically."""
    path = Path(path)
    if not path.name:  # "." or "/": suffixes need a name
        path = path.resolve()
    try:
        for n in range(10_000):
            candidate = path if n == 0 else path.with_name(f"{path.name}_{n}")
            if _try_claim(candidate):
                return candidate
    except NotADirectoryError:
        parent = next((p for p in path.parents if p.is_file()), path.parent)
        raise ConfigError(f"{key}={path}: {parent} is a file, not a directory; choose another {key}.") from None
    except PermissionError as err:
        raise ConfigError(f"{key}={path}: cannot create it ({err.strerror}: {err.filename}); choose a "
                          f"writable {key}.") from None
    raise ConfigError(f"{key}={path}: it and 10000 suffixed variants are all taken; choose another {key}.")


#: set when this process's run directory differs from the one asked for (run.py logs it into run.log)
CLAIM_NOTE: list[str] = []


def _rank_above_zero() -> bool:
    """A DDP rank > 0 (started by Lightning, torchrun or Slurm) uses rank 0's directory, claims none."""
    for var in RANK_VARS:
        try:
            if int(os.environ.get(var, "0")) > 0:
                return True
        except ValueError:
            continue
    return False


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra ships the callback API since 1.1
    _HydraCallback = object


class ClaimRunDir(_HydraCallback):
    """Hydra callback (conf/hydra/default.yaml): claim ``hydra.run.dir`` before Hydra uses it, and
    point Hydra at the claimed directory (``<dir>_<n>`` when the asked one is taken)."""

    def on_run_start(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf, read_write

        if _rank_above_zero():
            return
        HydraConfig.instance().set_config(config)
        try:
            wanted = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        except Exception:  # noqa: BLE001 - an unresolvable run dir: Hydra reports it itself
            return
        try:
            got = claim_run_dir(wanted)
        except ConfigError as err:
            print(f"napo_lab: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        if got != wanted:
            note = (f"{wanted} already holds another run (or other files): this run writes to {got} "
                    "(run directories are never shared)")
            print(f"napo_lab: {note}", file=sys.stderr)
            CLAIM_NOTE.append(note)
        with read_write(config.hydra.run):
            config.hydra.run.dir = str(got)
