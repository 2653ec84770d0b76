"""Loggers built from the ``logger`` group, and the W&B pieces: Lightning's WandbLogger online with a
key, offline without a network; secrets redacted from every config dump; offline runs readable."""

from __future__ import annotations

import os
from pathlib import Path

SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password")


def redact(obj):
    """Drop values whose key looks like a secret (the W&B key must never reach a config dump)."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if any(w in str(k).lower() for w in SECRET_WORDS) else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def wandb_mode(requested: str | None) -> str:
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


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
                 log_model: bool = False, api_key: str | None = None, run_config: dict | None = None):
    """Lightning's WandbLogger (the ``_target_`` of conf/logger/wandb.yaml).

    ``mode`` null: online when a key is set, else offline. ``api_key`` is better left to the
    WANDB_API_KEY environment variable; given here it is used the same way and redacted from every
    file. A multirun's jobs share the group ``sweep-<sweep dir>``. ``run_config``: the run's
    resolved, redacted config (napo_lab passes it)."""
    from lightning.pytorch.loggers import WandbLogger

    if api_key:
        os.environ["WANDB_API_KEY"] = str(api_key)
    os.environ.setdefault("WANDB_SILENT", "true")
    return WandbLogger(project=project, entity=entity, group=sweep_group() or group, name=name, save_dir=str(save_dir),
                       mode=wandb_mode(mode), tags=list(tags or []), log_model=bool(log_model),
                       config=redact(run_config or {}), reinit="finish_previous")


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
    """History rows and summary of an offline W&B run, read from its ``run-*.wandb`` log.

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
    history, summary = [], {}
    for raw in chunks:
        rec = pb.Record.FromString(raw)
        kind = rec.WhichOneof("record_type")
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
    return {"history": history, "summary": summary}


def publish(loggers, metrics: dict[str, float]) -> None:
    """Log a run's final metrics to every logger. W&B also records each metric's direction from the
    registry (run config ``metric_directions``: higher / lower; times and counts have none), so a
    W&B table or report never ranks a time or a count as best."""
    from lightning.pytorch.loggers import WandbLogger

    from napo_lab.metrics.registry import direction

    for logger in loggers or []:
        if isinstance(logger, WandbLogger):
            directions = {k: direction(k) for k in sorted(metrics) if direction(k)}
            logger.experiment.config.update({"metric_directions": directions}, allow_val_change=True)
        logger.log_metrics(metrics)
        logger.save()
