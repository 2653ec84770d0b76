"""Hydra callbacks of every napo_lab command (conf/hydra/default.yaml ``hydra.callbacks``).

- A multirun (``-m``, or an Optuna search) ends with one table of its jobs: method, seed, the key
  metrics, status and wall time, read back from each job's run_info.json and metrics.json.
- Before a sweeper starts, the sweep directory exists, so the Optuna presets can keep their study in
  ``<sweep dir>/optuna.db`` (SQLite) from the first trial: ``optuna-dashboard sqlite:///<sweep dir>/optuna.db``
  shows it, and the same command with ``hydra.sweep.dir=<sweep dir>`` continues a killed search.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from napo_lab.quiet import quiet_libraries
from napo_lab.rundir import METRICS, RUN_INFO

#: Columns of the end-of-sweep table, in order, when any job has them.
KEY_METRICS = ("val/hr@1", "test/hr@1", "test/rank/hr@1")


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir`` (in job order, then name)."""
    rows = []
    for info_path in sorted(Path(sweep_dir).glob("**/" + RUN_INFO)):
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            continue
        try:
            metrics = json.loads((info_path.parent / METRICS).read_text())
        except (OSError, ValueError):
            metrics = {}
        rows.append({"job": info_path.parent.name, "method": info.get("method"), "seed": info.get("seed"),
                     "status": info.get("status"), "wall_time_s": info.get("wall_time_s"),
                     "error": info.get("error"), "metrics": metrics, "mtime": info_path.stat().st_mtime})
    rows.sort(key=lambda r: r["mtime"])
    return rows


def print_sweep_summary(sweep_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = sweep_rows(sweep_dir)
    if not rows:
        return
    keys = [k for k in KEY_METRICS if any(k in r["metrics"] for r in rows)]
    n_ok = sum(r["status"] == "ok" for r in rows)
    table = Table(title=f"sweep: {len(rows)} jobs, {n_ok} ok, {len(rows) - n_ok} failed")
    for col in ("#", "method", "seed", *keys, "status", "wall time"):
        table.add_column(col, justify="left" if col in ("method", "status") else "right", no_wrap=col != "status")
    for i, r in enumerate(rows):
        values = [r["metrics"].get(k) for k in keys]
        cells = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}" for v in values]
        status = r["status"] or "?"
        if status != "ok" and r["error"]:
            status = f"{status}: {str(r['error']).strip().splitlines()[-1][:50]}"
        wall = r["wall_time_s"]
        table.add_row(str(i), str(r["method"]), str(r["seed"]), *cells, status,
                      "" if wall is None else f"{float(wall) / 60:.1f} min")
    console = Console()
    console.print(table)
    for i, r in enumerate(rows):
        console.print(f"{i}: {r['job']}", soft_wrap=True, highlight=False)
    console.print(f"sweep dir: {Path(sweep_dir).resolve()}", soft_wrap=True)
    console.print(f"report: python -m napo_lab.report {sweep_dir}", soft_wrap=True)


OPTUNA_DB = "optuna.db"
PIN = "pip install 'sqlalchemy<2' 'alembic<1.14'  (the [optuna] extra pins them)"


def rdb_problem() -> str | None:
    """Why Optuna's SQLite storage cannot work in this environment, or None. Optuna 2.x (the version
    hydra-optuna-sweeper 1.3 accepts) fails on SQLAlchemy 2 with a bare AssertionError."""
    try:
        import optuna
        import sqlalchemy
    except ImportError as err:
        return f"{err.name} is not installed"
    if int(optuna.__version__.split(".")[0]) < 3 and int(sqlalchemy.__version__.split(".")[0]) >= 2:
        return f"optuna {optuna.__version__} cannot use SQLAlchemy {sqlalchemy.__version__}"
    return None


def _check_optuna_storage(config: DictConfig) -> None:
    """The presets' default storage falls back to memory with one warning when the RDB layer cannot work
    here; a storage the user asked for is refused at once instead (exit 2, before any trial)."""
    import sys

    from omegaconf import open_dict, read_write

    sweeper = config.hydra.get("sweeper") or {}
    storage = sweeper.get("storage") if "optuna" in str(sweeper.get("_target_", "")) else None
    if not storage or not str(storage).startswith(("sqlite", "mysql", "postgresql")):
        return
    problem = rdb_problem()
    if problem is None:
        return
    default = str(storage).endswith(f"{config.hydra.sweep.dir}/{OPTUNA_DB}")
    if not default:
        print(f"napo_lab: hydra.sweeper.storage={storage} cannot be opened: {problem}. Fix: {PIN}.",
              file=sys.stderr)
        raise SystemExit(2)
    logging.getLogger("napo_lab").warning("the Optuna study is kept in memory only (no %s): %s. Fix: %s.",
                                          OPTUNA_DB, problem, PIN)
    with read_write(config), open_dict(config):
        config.hydra.sweeper.storage = None


class SweepCallbacks(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet_libraries(bool(config.get("debug", False)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet_libraries(bool(config.get("debug", False)))
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        _check_optuna_storage(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            print_sweep_summary(Path(config.hydra.sweep.dir))
        except Exception as err:  # noqa: BLE001 - a summary must never fail a finished sweep
            logging.getLogger("napo_lab").warning("no sweep summary: %s", err)
