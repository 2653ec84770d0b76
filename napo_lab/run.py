"""`python -m napo_lab.run [overrides]`: train (SFT, then a preference objective) and evaluate.

Each run writes into its own directory: config.yaml (resolved), run_info.json, metrics.json,
predictions_<split>.parquet, train_metrics.csv, adapter/ (the trained LoRA weights), and prints
a short results table. In a multirun a failing job is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import json
import logging
import math
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
from napo_lab.errors import report_error

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
    base = cfg.model.name if cfg.model.get("kind", "llm") == "seqrec" else cfg.loss.name
    sampler = cfg.get("neg_sampler")
    return f"{base}+{sampler.name}" if sampler else base  # e.g. sasrec+amns: the sampler names the row


def check_ddp_launch(cfg: DictConfig) -> None:
    """Multi-device jobs inside a local multirun cannot work: Lightning starts the other ranks by re-running
    the command line, which would re-run the whole sweep. Under Slurm or torchrun the ranks are started
    by the cluster instead, which is fine."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    from napo_lab.pipeline import _world_size

    if (_hydra_info()[1] and _world_size(cfg) > 1 and cfg.trainer.get("accelerator") != "tpu"
            and not (SLURMEnvironment.detect() or TorchElasticEnvironment.detect())):
        raise ValueError(f"trainer.devices x num_nodes = {_world_size(cfg)} inside a local multirun: Lightning "
                         "would start the other ranks by re-running the whole sweep. Sweep multi-device jobs "
                         "with hydra/launcher=slurm (Slurm starts the ranks), or run each one as its own "
                         "command (see docs/sweeps.md).")


def train_and_evaluate(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    """The whole job; returns flat metrics (also written to metrics.json)."""
    from napo_lab import pipeline
    from napo_lab.checks import validate
    from napo_lab.data import hard_negatives
    from napo_lab.data.samplers import strategy_parts
    from napo_lab.lit.callbacks import MetricsHistory
    from napo_lab.losses.sft import SFTLoss
    from napo_lab.models.logprobs import choose_layout

    objective = validate(cfg)
    check_ddp_launch(cfg)
    prepared = pipeline.load_data(cfg)
    if cfg.model.get("kind", "llm") == "seqrec":
        from napo_lab.models.seqrec import run_seqrec

        return run_seqrec(cfg, prepared, out_dir)

    model, tokenizer = pipeline.load_model(cfg)
    history = MetricsHistory()
    logger = pipeline.make_logger(cfg, out_dir)
    try:
        metrics: dict[str, float] = {}
        module = None
        if cfg.loss.stage == "sft" and type(objective) is SFTLoss:
            # Plain SFT is the SFT stage every preference run starts from: share its cache both ways.
            _, reused = pipeline.ensure_sft_adapter(cfg, model, tokenizer, prepared, out_dir, history, logger)
            metrics["sft/reused_cache"] = float(reused)
        elif cfg.loss.stage == "sft":
            module = pipeline.fit_stage(cfg, "sft", model, tokenizer, prepared, cfg.loss, out_dir, logger,
                                        history=history, loss=objective)
        else:
            sft_path, reused = pipeline.ensure_sft_adapter(cfg, model, tokenizer, prepared, out_dir, history)
            metrics["sft/reused_cache"] = float(reused)
            ref_cache = None
            if getattr(objective, "needs_reference", False):
                from napo_lab.models.ref_cache import reference_cache_for

                pipeline.attach_reference(model, sft_path)
                ref_cache = reference_cache_for(cfg, sft_path, prepared)
            neg = cfg.loss.get("negatives") or {}
            strategies = strategy_parts(neg.get("strategy", "in_prompt"), neg.get("weights"))
            needs_seq = bool(getattr(objective, "needs_sequential_model", False))
            seqrec, providers = None, {}
            sampler = cfg.get("neg_sampler")
            seqrec_ranks = bool(sampler) and sampler.sampler in ("ans", "amns") and sampler.scorer == "seqrec"
            if needs_seq or "seqrec_hard" in strategies or seqrec_ranks:
                from napo_lab.models.seqrec import load_or_train_seqrec

                seqrec = load_or_train_seqrec(prepared, cfg.seqrec, Path(cfg.paths.cache_dir))
            if "seqrec_hard" in strategies:
                providers["seqrec_hard"] = hard_negatives.seqrec_hard_factory(seqrec)
            if "self_hard" in strategies:  # ranked by the SFT model, before preference training moves it
                providers["self_hard"] = hard_negatives.self_hard_factory(
                    model, tokenizer.pad_token_id, choose_layout(cfg.forward, model, cfg.strategy.get("name")))
            module = pipeline.fit_stage(cfg, "pref", model, tokenizer, prepared, cfg.loss, out_dir, logger,
                                        seqrec=seqrec if needs_seq else None, history=history, loss=objective,
                                        negative_providers=providers, ref_cache=ref_cache,
                                        negatives_scorer=seqrec if seqrec_ranks else None)
        metrics["train/seconds"] = float(module.fit_seconds) if module is not None else history.seconds
        if pipeline.global_rank() != 0:  # DDP: rank 0 alone saves, evaluates and logs
            return metrics
        history.write(out_dir / "train_metrics.csv")
        pipeline.save_adapter(model, out_dir / "adapter")
        dm = module.datamodule if module is not None else pipeline.eval_datamodule(cfg, prepared, tokenizer)
        metrics.update(pipeline.evaluate(cfg, model, tokenizer, prepared, dm, out_dir))
        if logger:
            logger.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
        return metrics
    finally:
        if logger and hasattr(logger, "experiment") and cfg.logger.name == "wandb":
            import wandb

            if wandb.run is not None:
                wandb.finish()
            wandb.teardown()  # the next job of a multirun starts a fresh W&B run with its own settings


HEADLINE = [
    ("hr@1", "HR@1, S-DPO: hits / all users"), ("hr@1_valid", "HR@1, LLaRA: hits / valid answers"),
    ("valid_ratio", "answers naming exactly one candidate"),
    ("rank/hr@1", "HR@1 by title likelihood (20 sampled candidates)"), ("rank/ndcg@10", "NDCG@10 (sampled)"),
    ("rank/mrr", "MRR (sampled)"), ("pop/avg_pop@1", "mean train count of the answers"),
    ("pop/tail_pct@1", "share of tail items among answers"), ("pop/coverage@1", "item coverage of answers"),
    ("band/head/hr@1", "HR@1 on head targets"), ("band/mid/hr@1", "HR@1 on mid targets"),
    ("band/tail/hr@1", "HR@1 on tail targets"),
]


def print_results(cfg: DictConfig, metrics: dict[str, float], out_dir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{method_name(cfg)} on {cfg.dataset.name} (seed {cfg.seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    for split in ("val", "test"):
        for name, label in HEADLINE:
            key = f"{split}/{name}"
            if key in metrics:
                table.add_row(f"{split}/{name}", f"{metrics[key]:.4f}", label)
    console = Console(stderr=False)
    console.print(table)
    console.print(f"run dir: {out_dir}   wall time: {seconds / 60:.1f} min")
    if cfg.get("task_name") == "train" and cfg.dataset.get("train_limit") is None and cfg.sft.get("train_limit"):
        console.print("This is the CPU-sized job; the full-size runs are experiment configs, e.g. "
                      "`python -m napo_lab.run experiment=paper_napo` (see experiments/README.md).")


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
        # Hydra made a fresh dir for this invocation: keep nothing half-written there.
        shutil.rmtree(new_dir, ignore_errors=True)
    return target


def execute(cfg: DictConfig, job=None) -> float | None:
    """Run one job with bookkeeping; return the optimised metric (for sweepers).

    ``job(cfg, out_dir) -> metrics`` defaults to training then evaluating (napo_lab.evaluate passes
    an evaluation-only job)."""
    job = job or train_and_evaluate
    overrides, multirun = _hydra_info()
    in_hydra = _in_hydra()
    from napo_lab.pipeline import global_rank

    rank = global_rank()
    try:
        # DDP ranks > 0 (started later by Lightning's launcher, with rank 0's environment) use the
        # directory rank 0 chose, so they resume the same checkpoint and never delete anything.
        out_dir = (_run_dir(cfg, overrides, multirun, in_hydra) if rank == 0 or RUN_DIR_ENV not in os.environ
                   else Path(os.environ[RUN_DIR_ENV]))
    except FileNotFoundError as err:
        sys.exit(report_error(err, debug=bool(cfg.get("debug", False))))
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir != Path(cfg.paths.output_dir):
        cfg.paths.output_dir = str(out_dir)
    from napo_lab.lit.wandb import redact

    if rank != 0:  # a DDP rank > 0: runs the job alongside rank 0, writes nothing
        job(cfg, out_dir)
        return None
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(
        redact(OmegaConf.to_container(cfg, resolve=True)))))
    info = {"method": method_name(cfg), "dataset": cfg.dataset.name, "seed": int(cfg.seed),
            "model": cfg.model.name, "status": "running", "error": None, "commit": _commit(),
            "overrides": overrides, "pid": os.getpid(), "host": socket.gethostname()}
    write_json(out_dir / "run_info.json", info)
    os.environ[RUN_DIR_ENV] = str(out_dir)
    start = time.perf_counter()
    try:
        metrics = job(cfg, out_dir)
    except BaseException as err:  # noqa: BLE001 - every failure is recorded, then reported
        info.update(status="failed", error=f"{type(err).__name__}: {err}",
                    wall_time_s=time.perf_counter() - start)
        write_json(out_dir / "run_info.json", info)
        if isinstance(err, KeyboardInterrupt):
            raise
        code = report_error(err, debug=bool(cfg.get("debug", False)))
        if multirun:
            return float("nan")
        sys.exit(code)
    seconds = time.perf_counter() - start
    metrics["wall_time_s"] = seconds
    write_json(out_dir / "metrics.json", metrics)
    info.update(status="ok", wall_time_s=seconds)
    write_json(out_dir / "run_info.json", info)
    if not (cfg.get("checkpoint") or {}).get("keep", False):
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    print_results(cfg, metrics, out_dir, seconds)
    value = metrics.get(cfg.get("optimized_metric") or "", float("nan"))
    return float(value)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return execute(cfg)


if __name__ == "__main__":
    main()
