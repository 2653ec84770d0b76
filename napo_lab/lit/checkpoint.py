"""Checkpoints that survive kill -9: atomic writes, trainable state only, exact mid-epoch resume.

- ``AtomicCheckpointIO`` writes to a temporary file in the same directory, fsyncs, then renames, so
  a kill during a save leaves the previous checkpoint intact.
- ``ResumeState`` stores what Lightning does not: how many examples of the current epoch were
  consumed (the sampler skips them on resume), the RNG states (LoRA dropout), and an identity of
  the model and data the checkpoint belongs to (a checkpoint from another model is refused).
- ``check_checkpoint`` opens a checkpoint safely (``weights_only=True``) and turns a corrupt,
  truncated or foreign file into one clear error naming the file.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from napo_lab.errors import UserError

log = logging.getLogger(__name__)

STATE_KEY = "napo_lab"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be used; the message names the file and what to do."""


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def check_checkpoint(path: Path, identity: str) -> dict[str, Any]:
    """Load and vet a checkpoint; raise CheckpointError with the file name when it is unusable."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, or holding objects we refuse to unpickle
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}); it is corrupt or not a napo_lab "
            "checkpoint. Delete it to start this stage afresh, or point resume= at another run dir.") from err
    meta = ckpt.get(STATE_KEY) if isinstance(ckpt, dict) else None
    if not meta or "identity" not in meta or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a napo_lab training checkpoint (no napo_lab state).")
    if meta["identity"] != identity:
        raise CheckpointError(
            f"checkpoint {path} belongs to another model, dataset or stage settings than this run "
            f"({meta.get('description', 'unknown')}); resume it with its own config, or delete it.")
    return ckpt


class ResumeState(L.Callback):
    """Saves and restores the epoch position of the sampler, RNG states and the run identity."""

    def __init__(self, identity: str, description: str, sampler, history=None) -> None:
        self.identity, self.description, self.sampler, self.history = identity, description, sampler, history
        self.consumed = 0
        self._epoch = -1

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch != self._epoch:  # a new epoch (not the one being resumed)
            self._epoch = trainer.current_epoch
            self.consumed = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Global count: under DDP each rank sees batch / world of the sampler's order.
        self.consumed += len(batch["prompt_ids"]) * trainer.world_size

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[STATE_KEY] = {
            "identity": self.identity, "description": self.description,
            "epoch": int(trainer.current_epoch), "consumed": int(self.consumed),
            "rng": {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": _py_state()},
            # the training history so far, so a resumed run's history equals an uninterrupted run's
            "history": [dict(row) for row in self.history.rows] if self.history is not None else None,
            "csv_logs": _csv_logs(trainer),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint[STATE_KEY]
        self.sampler.resume_at(int(meta["epoch"]), int(meta["consumed"]))
        self._epoch = int(meta["epoch"])
        self.consumed = int(meta["consumed"])
        rng = meta.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "numpy" in rng:
            np.random.set_state(_np_unstate(rng["numpy"]))
        if "python" in rng:
            random.setstate(_py_unstate(rng["python"]))
        if self.history is not None and meta.get("history") is not None:
            self.history.rows[:] = [dict(row) for row in meta["history"]]
        _restore_csv_logs(trainer, meta.get("csv_logs") or {})
        log.info("resuming at epoch %d after %d examples", meta["epoch"], meta["consumed"])


def _csv_loggers(trainer) -> list[tuple[Any, Any]]:
    """(what the trainer logs through, the CSV logger behind it): the SFT stage logs through a
    StageLogger (keys under ``sft/``), whose ``inner`` is the run's CSV logger."""
    from lightning.pytorch.loggers import CSVLogger

    if trainer.global_rank != 0:
        return []
    pairs = [(lg, getattr(lg, "inner", lg)) for lg in trainer.loggers]
    return [(lg, csv_logger) for lg, csv_logger in pairs if isinstance(csv_logger, CSVLogger)]


def _csv_logs(trainer) -> dict[str, Any]:
    """The CSV loggers' metrics files as they are at this checkpoint (flushed first), and the row this
    step is about to log: checkpoints are saved in on_train_batch_end, before Lightning logs the step."""
    loggers = _csv_loggers(trainer)
    if not loggers:
        return {}
    out: dict[str, Any] = {"files": {}, "pending": _pending_row(trainer)}
    for _, logger in loggers:
        logger.save()
        path = Path(logger.experiment.metrics_file_path)
        out["files"][str(logger.log_dir)] = path.read_text() if path.is_file() else ""
    return out


def _pending_row(trainer) -> dict[str, Any] | None:
    """What Lightning's logger connector will log for the current training step (its own rule), or None."""
    from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars

    conn, loop = trainer._logger_connector, trainer.fit_loop
    if loop._should_accumulate() or not conn.should_update_logs or conn._first_loop_iter is None:
        return None
    metrics = convert_tensors_to_scalars(conn.metrics["log"])
    if not metrics:
        return None
    step = metrics.pop("step", None)
    if step is None:
        metrics.setdefault("epoch", trainer.current_epoch)
        step = loop.epoch_loop._batches_that_stepped
    return {"metrics": dict(metrics), "step": int(step)}


def _restore_csv_logs(trainer, saved: dict[str, Any]) -> None:
    """Put the CSV loggers' rows up to the checkpoint back (Lightning's CSV writer deletes the file of a
    directory it finds non-empty), with the checkpoint step's own row: the resumed run appends to them."""
    import csv
    import io

    pending = saved.get("pending")
    for outer, logger in _csv_loggers(trainer):
        text = (saved.get("files") or {}).get(str(logger.log_dir))
        if text is None:
            continue
        with warnings.catch_warnings():  # "previous log files will be deleted": they are put back below
            warnings.filterwarnings("ignore", message=".*Previous log files.*")
            writer = logger.experiment  # created now: it removes the old metrics.csv
        writer.metrics = []
        Path(writer.metrics_file_path).write_text(text)
        writer.metrics_keys = list(csv.DictReader(io.StringIO(text)).fieldnames or []) if text else []
        if pending:
            key = getattr(outer, "key", lambda k: k)  # the names the stage's logger gives its metrics
            writer.log_metrics({key(k): v for k, v in pending["metrics"].items()}, int(pending["step"]))
            writer.save()


# RNG states as tensors / plain lists so the checkpoint loads with weights_only=True.
def _np_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.as_tensor(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _np_unstate(s: dict[str, Any]):
    return (s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"])


def _py_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _py_unstate(s: dict[str, Any]):
    return (s["version"], tuple(s["internal"]), s["gauss"])
