"""`python -m napo_lab.run [overrides]`: the command line and the run's bookkeeping.

The work itself is napo_lab.recipe (validate, build, train the stages, evaluate). Here: choosing the
run directory (or the interrupted run to continue), writing config.yaml, run_info.json and
metrics.json (napo_lab.rundir names them), recording failures in one paragraph, and printing the
results table. In a multirun a failing job is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from napo_lab import CONF_DIR
from napo_lab.errors import ConfigError, UserError, report_error
from napo_lab.rundir import CHECKPOINTS, CONFIG, METRICS, ROLES, RUN_INFO

log = logging.getLogger("napo_lab")
RUN_DIR_ENV = "NAPO_LAB_DDP_RUN_DIR"  # rank 0's run dir, inherited by the DDP ranks Lightning starts


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _in_hydra() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized()


def _hydra_info() -> tuple[list[str], bool]:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return list(hc.overrides.task), hc.mode == RunMode.MULTIRUN
    except ValueError:
        return [], False


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def method_name(cfg: DictConfig) -> str:
    if cfg.get("method_name"):
        return str(cfg.method_name)
    kind = cfg.model.get("kind")
    if kind == "cf":  # bprmf, bprmf+ts-resample, lightgcn+ts-weight, ...
        sampler = cfg.get("sampler") or {}
        use = f"+ts-{sampler.get('use', 'resample')}" if sampler.get("name") == "triplet_shapley" else ""
        return f"{cfg.model.name}{use}"
    base = cfg.model.name if kind == "seqrec" else cfg.loss.name
    neg = cfg.get("neg_sampler")
    return f"{base}+{neg.name}" if neg else base  # e.g. sasrec+amns: the sampler names the row


def check_ddp_launch(cfg: DictConfig) -> None:
    """Multi-device jobs inside a local multirun cannot work: Lightning starts the other ranks by re-running
    the command line, which would re-run the whole sweep. Under Slurm or torchrun the ranks are started
    by the cluster instead, which is fine."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    from napo_lab.recipe.validate import world_size

    world = world_size(OmegaConf.to_container(cfg.trainer, resolve=True))
    if (_hydra_info()[1] and world > 1 and cfg.trainer.get("accelerator") != "tpu"
            and not (SLURMEnvironment.detect() or TorchElasticEnvironment.detect())):
        raise ConfigError(f"trainer.devices x num_nodes = {world} inside a local multirun: Lightning "
                          "would start the other ranks by re-running the whole sweep. Sweep multi-device jobs "
                          "with hydra/launcher=slurm (Slurm starts the ranks), or run each one as its own "
                          "command (see docs/sweeps.md).")


def train_job(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    from napo_lab.recipe import train_and_evaluate

    check_ddp_launch(cfg)
    return train_and_evaluate(cfg, out_dir)


def print_results(cfg: DictConfig, metrics: dict[str, float], out_dir: Path, seconds: float) -> None:
    """The headline metrics, each beside what it means: its chance level, the untrained model
    (zero-shot) and the sequential model on the same rows, and the paired difference to zero-shot with
    its 95% interval over users (when eval.references computed them)."""
    from rich.console import Console
    from rich.table import Table

    from napo_lab.metrics.registry import HEADLINE, label, lookup

    refs = any(k.startswith("ref/") for k in metrics)
    table = Table(title=f"{method_name(cfg)} on {cfg.dataset.name} (seed {cfg.seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if refs:
        for name in ("chance", "zero-shot", cfg.seqrec.name if cfg.get("seqrec") else "seqrec"):
            table.add_column(name, justify="right")
        table.add_column("vs zero-shot [95% CI]", justify="right")
    table.add_column("meaning")
    for role in ROLES:
        for name in HEADLINE:
            key = f"{role}/{name}"
            if key not in metrics:
                continue
            row = [key, f"{metrics[key]:.4f}"]
            if refs:
                row += [_fmt(metrics.get(f"ref/{r}/{key}")) for r in ("chance", "zero_shot", "seqrec")]
                diff = [metrics.get(f"vs_zero_shot/{key}/{p}") for p in ("diff", "low", "high")]
                row.append("" if diff[0] is None else
                           f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]{' *' if diff[1] > 0 or diff[2] < 0 else ''}")
            table.add_row(*row, label(key))
    for key in sorted(k for k in metrics if k.startswith("test/dpo4rec/") and (m := lookup(k)) and m.headline):
        ci = [metrics.get(f"{key}_ci_{b}") for b in ("low", "high")]
        diff = [metrics.get(f"{key}_vs_no_reasoning{p}") for p in ("", "_ci_low", "_ci_high")]
        value = f"{metrics[key]:.4f}" + ("" if ci[0] is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")
        if diff[0] is not None:
            value += f"  vs none {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]"
        table.add_row(key, value, *([""] * (4 if refs else 0)), label(key))
    console = Console(stderr=False)
    if not console.is_terminal:  # a log file or a pipe: no wrapping at rich's default 80 columns
        console = Console(stderr=False, width=160)
    console.print(table)
    if refs:
        console.print("chance: a random ranking of the candidates; zero-shot: this model untrained; * the interval "
                      "over users excludes 0.")
    console.print(f"run dir: {out_dir}", soft_wrap=True)
    console.print(f"wall time: {seconds / 60:.1f} min")
    if (cfg.get("task_name") == "train" and cfg.model.get("kind", "llm") == "llm" and not _hydra_info()[0]
            and _in_hydra()):  # the default job only
        console.print("This is the CPU-sized job; the full-size runs are experiment configs, e.g. "
                      "`python -m napo_lab.run experiment=paper_napo` (see experiments/README.md).")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _seed(cfg: DictConfig):
    """The seed as recorded in run_info.json (as given when it is not an integer: validation says why)."""
    value = cfg.get("seed")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _run_dir(cfg: DictConfig, overrides: list[str], multirun: bool, in_hydra: bool) -> Path:
    """Hydra's new run dir, or the interrupted run this command continues (see napo_lab.resume)."""
    from napo_lab.resume import resolve_run_dir

    new_dir = Path(cfg.paths.output_dir)
    resume = cfg.get("resume", "auto")
    if str(resume).lower() == "auto" and not in_hydra:
        return new_dir  # composed in Python (tests, notebooks): only an explicit resume continues a run
    roots = [new_dir.parent.parent if multirun else new_dir.parent]
    target = resolve_run_dir(resume, new_dir, overrides, roots)
    if target != new_dir and new_dir.is_dir():
        # Hydra made a fresh dir for this invocation: keep nothing half-written there, and append this
        # invocation's log to the continued run's run.log.
        _move_log_files(new_dir, target)
        shutil.rmtree(new_dir, ignore_errors=True)
    return target


def _move_log_files(old: Path, new: Path) -> None:
    for handler in logging.getLogger().handlers:
        path = Path(getattr(handler, "baseFilename", "") or "/")
        if isinstance(handler, logging.FileHandler) and path.parent == old.resolve():
            handler.acquire()
            try:
                handler.close()
                written = path.read_text() if path.is_file() else ""
                handler.baseFilename = str((new / path.name).resolve())
                handler.mode = "a"
                with open(handler.baseFilename, "a") as fh:
                    fh.write(written)
            finally:
                handler.release()


def execute(cfg: DictConfig, job=None) -> float | None:
    """Run one job with bookkeeping; return the optimised metric (for sweepers).

    ``job(cfg, out_dir) -> metrics`` defaults to training then evaluating (napo_lab.evaluate passes
    an evaluation-only job)."""
    job = job or train_job
    overrides, multirun = _hydra_info()
    in_hydra = _in_hydra()
    from napo_lab.quiet import quiet_libraries

    quiet_libraries(bool(cfg.get("debug", False)))
    from napo_lab.memory import configure as configure_malloc
    from napo_lab.memory import cpu_kernel_cache
    from napo_lab.recipe.build import cpu_threads, global_rank

    rank = global_rank()
    try:  # before anything is written
        threads = cpu_threads(cfg.get("cpu_threads", "auto"))
        kernels = cpu_kernel_cache(cfg.get("cpu_kernel_cache"))
        malloc = configure_malloc(cfg.get("malloc"))
    except UserError as err:
        sys.exit(report_error(err, debug=bool(cfg.get("debug", False))))
    import torch

    if threads:
        torch.set_num_threads(threads)
    log.info("torch CPU threads: %d (cpu_threads=%s); CPU kernel cache: %s; malloc: %s", torch.get_num_threads(),
             cfg.get("cpu_threads", "auto"), kernels, malloc)
    from napo_lab.resume import CLAIM_NOTE

    for note in CLAIM_NOTE:
        log.warning(note)
    try:
        # DDP ranks > 0 (started later by Lightning's launcher, with rank 0's environment) use the
        # directory rank 0 chose, so they resume the same checkpoint and never delete anything.
        out_dir = (_run_dir(cfg, overrides, multirun, in_hydra) if rank == 0 or RUN_DIR_ENV not in os.environ
                   else Path(os.environ[RUN_DIR_ENV]))
        resuming = out_dir != Path(cfg.paths.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileNotFoundError, OSError, UserError) as err:  # refused before anything is written
        code = report_error(err, debug=bool(cfg.get("debug", False)))
        if multirun:  # a job that cannot even start is a failed job; the sweep goes on
            return float("nan")
        sys.exit(code)
    if resuming:
        cfg.paths.output_dir = str(out_dir)
    from napo_lab.lit.loggers import redact

    if rank != 0:  # a DDP rank > 0: runs the job alongside rank 0, writes nothing
        job(cfg, out_dir)
        return None
    # A resumed run's record is restored when the resume is refused (a foreign checkpoint, a bad
    # setting): `resume=auto` of the original command must still find it as it was.
    before = {name: (out_dir / name).read_bytes() if (out_dir / name).is_file() else None
              for name in (CONFIG, RUN_INFO)} if resuming else {}
    (out_dir / CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.create(
        redact(OmegaConf.to_container(cfg, resolve=True)))))
    info = {"method": method_name(cfg), "dataset": cfg.dataset.name, "seed": _seed(cfg),
            "model": cfg.model.name, "status": "running", "error": None, "commit": _commit(),
            "overrides": overrides, "pid": os.getpid(), "host": socket.gethostname()}
    write_json(out_dir / RUN_INFO, info)
    os.environ[RUN_DIR_ENV] = str(out_dir)
    start = time.perf_counter()
    try:
        metrics = job(cfg, out_dir)
    except BaseException as err:  # noqa: BLE001 - every failure is recorded, then reported
        if before and isinstance(err, UserError):
            for name, data in before.items():
                if data is None:
                    (out_dir / name).unlink(missing_ok=True)
                else:
                    (out_dir / name).write_bytes(data)
        else:
            # Ctrl-C: interrupted (resume=auto continues it); anything else: failed (never taken over)
            interrupted = isinstance(err, KeyboardInterrupt)
            info.update(status="interrupted" if interrupted else "failed", error=f"{type(err).__name__}: {err}",
                        wall_time_s=time.perf_counter() - start)
            write_json(out_dir / RUN_INFO, info)
        if isinstance(err, KeyboardInterrupt):
            raise
        code = report_error(err, debug=bool(cfg.get("debug", False)))
        if multirun:
            return float("nan")
        sys.exit(code)
    seconds = time.perf_counter() - start
    metrics["wall_time_s"] = seconds
    write_json(out_dir / METRICS, metrics)
    info.update(status="ok", wall_time_s=seconds)
    write_json(out_dir / RUN_INFO, info)
    if not cfg.checkpoint.keep:
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    print_results(cfg, metrics, out_dir, seconds)
    value = metrics.get(cfg.get("optimized_metric") or "", float("nan"))
    return float(value)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return execute(cfg)


if __name__ == "__main__":
    main()
