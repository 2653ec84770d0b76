"""Loggers built from the ``logger`` group, and the W&B pieces: Lightning's WandbLogger online with a
key, offline without a network; secrets redacted from every config dump; offline runs readable."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password")


def redact(obj):
    """Drop values whose key looks like a secret (the W&B key must never reach a config dump)."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if any(w in str(k).lower() for w in SECRET_WORDS) else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def wandb_reachable(timeout: float = 3.0) -> bool:
    """Can the W&B server be reached (a TCP connection to $WANDB_BASE_URL, default api.wandb.ai:443)?"""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "api.wandb.ai", port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode(requested: str | None) -> str:
    """online with a key and a reachable server; offline otherwise (with one warning when a key is set
    but the server cannot be reached: W&B itself would wait minutes, then fail the run)."""
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if not os.environ.get("WANDB_API_KEY"):
        return "offline"
    if wandb_reachable():
        return "online"
    import logging

    logging.getLogger("napo_lab").warning(
        "WANDB_API_KEY is set but the W&B server cannot be reached: logging offline into the run dir "
        "(upload later with `wandb sync <run dir>/wandb/offline-run-*`).")
    return "offline"


def job_suffix() -> str | None:
    """``j<job number>`` in a multirun, so every job (hyper-parameter variant, Optuna trial) has its own name."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return f"j{hc.job.num}" if hc.mode == RunMode.MULTIRUN else None
    except (ValueError, ImportError):
        return None


def sweep_group() -> str | None:
    """The multirun sweep's name, so every job of one sweep lands in one W&B group."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return f"sweep-{Path(hc.sweep.dir).name}"
    except (ValueError, ImportError):
        pass
    return None


def wandb_logger(save_dir: str, project: str = "napo_lab", entity: str | None = None, group: str | None = None,
                 name: str | None = None, mode: str | None = None, tags: list[str] | None = None,
                 log_model: bool = False, log_adapter: bool = False, api_key: str | None = None,
                 run_config: dict | None = None):
    """Lightning's WandbLogger (the ``_target_`` of conf/logger/wandb.yaml).

    ``mode`` null: online when a key is set, else offline. ``api_key`` is better left to the
    WANDB_API_KEY environment variable; given here it is used the same way and redacted from every
    file. A multirun's jobs share the group ``sweep-<sweep dir>``. ``run_config``: the run's
    resolved, redacted config (napo_lab passes it). ``log_adapter``: log the trained adapter (weights,
    adapter_config.json, napo_lab_config.yaml, the card) as an Artifact of type ``model``."""
    from lightning.pytorch.loggers import WandbLogger

    if api_key:
        os.environ["WANDB_API_KEY"] = str(api_key)
    os.environ.setdefault("WANDB_SILENT", "true")
    suffix = job_suffix()
    name = f"{name}-{suffix}" if name and suffix else name
    logger = WandbLogger(project=project, entity=entity, group=sweep_group() or group, name=name,
                         save_dir=str(save_dir), mode=wandb_mode(mode), tags=list(tags or []), log_model=bool(log_model),
                         config=redact(run_config or {}), reinit="finish_previous")
    logger.napo_log_adapter = bool(log_adapter)
    init = getattr(logger, "_wandb_init", {})
    if init.get("anonymous", False) is None:  # Lightning passes anonymous=None; W&B 0.2x+ warns about the setting
        init.pop("anonymous")
    return logger


def finish_wandb() -> None:
    """Close the W&B run of this job, so the next job of a multirun starts a fresh one."""
    import sys

    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


def read_offline_run(run_dir: Path) -> dict:
    """History rows, summary, logged artifacts (name, type, description, metadata, files) and custom x
    axes (``define_metric``: metric or glob -> step metric) of an offline W&B run, read from its
    ``run-*.wandb`` log.

    The file is a LevelDB-style log (7-byte header, then 32 KiB blocks of CRC/length/type framed
    chunks) of protobuf ``Record``s; reading it needs no network and no W&B server.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    data, pos, block, chunks, partial = files[0].read_bytes(), 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        chunk, pos = data[pos:pos + length], pos + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            partial = chunk
        elif kind == 3:
            partial += chunk
        elif kind == 4:
            chunks.append(partial + chunk)
    history, summary, artifacts, axes = [], {}, [], {}
    for raw in chunks:
        rec = pb.Record.FromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "artifact":
            art = rec.artifact
            artifacts.append({"name": art.name, "type": art.type, "description": art.description,
                              "metadata": json.loads(art.metadata or "{}"), "aliases": list(art.aliases),
                              "files": {e.path: {"digest": e.digest, "size": e.size, "local_path": e.local_path}
                                        for e in art.manifest.contents}})
        elif kind == "metric" and rec.metric.step_metric:
            axes[rec.metric.name or rec.metric.glob_name] = rec.metric.step_metric
        items = rec.history.item if kind == "history" else rec.summary.update if kind == "summary" else None
        if not items:
            continue
        values = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
        if kind == "history":
            history.append(values)
        else:
            summary.update(values)
    for row in history:
        summary.update({k: v for k, v in row.items() if not k.startswith("_")})
    return {"history": history, "summary": summary, "artifacts": artifacts, "axes": axes}


#: Users shown in W&B's predictions table (a sample: the whole file stays in the run dir).
PREDICTION_SAMPLE = 50


def wandb_tables(logger, metrics: dict[str, float], out_dir) -> None:
    """W&B Tables: ``results`` (metric, value) and ``predictions/<role>`` (a sample of users: history,
    candidates, answer, target, hit), read back from the run dir's predictions_<role>.parquet."""
    import pandas as pd

    from napo_lab.rundir import ROLES, predictions_file

    logger.log_table("results", dataframe=pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}))
    for role in ROLES:
        path = Path(out_dir) / predictions_file(role)
        if not path.is_file():
            continue
        pred = pd.read_parquet(path).head(PREDICTION_SAMPLE)
        if "history_titles" not in pred:
            continue
        logger.log_table(f"predictions/{role}", dataframe=pd.DataFrame({
            "user": pred["user"], "history": [" | ".join(h) for h in pred["history_titles"]],
            "candidates": [" | ".join(c) for c in pred["candidate_titles"]], "generated": pred["generated"],
            "answer": pred["matched_title"], "target": pred["target_title"],
            "hit": (pred["matched"] == pred["target"]).astype(int)}))


def log_adapter_artifact(logger, adapter_dir: Path) -> None:
    """The adapter directory (weights, adapter_config.json, napo_lab_config.yaml, README.md card) as a
    W&B Artifact ``adapter-<run id>`` of type ``model``, its card as the description. Offline, the
    artifact is recorded in the offline run (files staged by W&B) and uploaded by ``wandb sync``."""
    import json

    import wandb

    adapter_dir = Path(adapter_dir)
    run = logger.experiment
    card = adapter_dir / "README.md"
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    artifact = wandb.Artifact(f"adapter-{run.id}", type="model",
                              description=card.read_text() if card.is_file() else None,
                              metadata={"base_model": config.get("base_model_name_or_path"),
                                        "peft_type": config.get("peft_type"), "r": config.get("r"),
                                        "lora_alpha": config.get("lora_alpha")})
    artifact.add_dir(str(adapter_dir))
    run.log_artifact(artifact)


def publish(loggers, metrics: dict[str, float], out_dir=None, adapter_dir=None) -> None:
    """Log a run's final metrics to every logger. W&B also records each metric's direction from the
    registry (run config ``metric_directions``: higher / lower; times and counts have none), so a
    W&B table or report never ranks a time or a count as best; with ``logger.wandb.log_adapter=true``
    the adapter in ``adapter_dir`` is logged as a model Artifact."""
    from lightning.pytorch.loggers import WandbLogger

    from napo_lab.metrics.registry import direction

    for logger in loggers or []:
        if isinstance(logger, WandbLogger):
            directions = {k: direction(k) for k in sorted(metrics) if direction(k)}
            logger.experiment.config.update({"metric_directions": directions}, allow_val_change=True)
            if out_dir is not None:
                wandb_tables(logger, metrics, out_dir)
            if adapter_dir is not None and getattr(logger, "napo_log_adapter", False):
                log_adapter_artifact(logger, adapter_dir)
        logger.log_metrics(metrics)
        logger.save()


class StageLogger(Logger):
    """What the SFT stage logs through: the run's logger, every metric under ``<stage>/``
    (``sft/train/loss``, ``sft/epoch``), so the SFT stage and the preference stage (TRL's names,
    unprefixed) are separate curves in one W&B run, never two values at one step of one key. W&B also
    gets ``<stage>/step`` and plots ``<stage>/*`` and the validation curve ``curve/<stage>/*`` against it
    (``define_metric``): the SFT curves' x axis is the SFT stage's own optimisation step."""

    def __init__(self, inner, stage: str) -> None:
        super().__init__()
        self.inner, self.stage, self._defined = inner, stage, False

    name = property(lambda self: self.inner.name)
    version = property(lambda self: self.inner.version)
    save_dir = property(lambda self: self.inner.save_dir)
    log_dir = property(lambda self: getattr(self.inner, "log_dir", None))
    experiment = property(lambda self: self.inner.experiment)

    def key(self, key: str) -> str:
        if key.startswith((f"{self.stage}/", f"curve/{self.stage}/")):  # the validation curve names its stage
            return key
        return f"{self.stage}/{key}"

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        from lightning.pytorch.loggers import WandbLogger

        values = {self.key(k): v for k, v in metrics.items()}
        if isinstance(self.inner, WandbLogger):
            if not self._defined:
                self.inner.experiment.define_metric(f"{self.stage}/step")
                for pattern in (f"{self.stage}/*", f"curve/{self.stage}/*"):
                    self.inner.experiment.define_metric(pattern, step_metric=f"{self.stage}/step")
                self._defined = True
            if step is not None:
                values[f"{self.stage}/step"] = step
        self.inner.log_metrics(values, step)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        self.inner.log_hyperparams(params, *args, **kwargs)

    def save(self) -> None:
        self.inner.save()

    def finalize(self, status: str) -> None:
        self.inner.finalize(status)
