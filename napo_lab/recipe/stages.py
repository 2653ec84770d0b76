"""Running one training stage (``sft`` or ``pref``) with checkpoints that resume exactly, and the SFT
adapter every preference run starts from (trained once per key, cached)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from napo_lab.cache import CacheEntry, atomic_write_text, canonical
from napo_lab.data.prepared import PreparedDataset
from napo_lab.lit.callbacks import HeapTrim, MetricsHistory
from napo_lab.lit.checkpoint import ResumeState, check_checkpoint
from napo_lab.lit.loggers import StageLogger
from napo_lab.lit.module import RecLitModule
from napo_lab.losses.base import PreferenceLoss
from napo_lab.losses.sft import SFTLoss
from napo_lab.memory import release_memory
from napo_lab.models.adapters import WEIGHTS, load_adapter_into, stable_adapter_config
from napo_lab.recipe import build
from napo_lab.recipe.keys import checkpoint_identity, model_identity, sft_key, stage_seed, stage_settings
from napo_lab.rundir import CHECKPOINTS, PREF, SFT

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What every stage of one run shares."""

    cfg: DictConfig
    prepared: PreparedDataset
    model: Any
    tokenizer: Any
    out_dir: Path
    loggers: list[Any] = field(default_factory=list)
    history: MetricsHistory = field(default_factory=MetricsHistory)

    @property
    def layout(self) -> str:
        return build.layout(self.cfg, self.model)


def fit_stage(job: Job, stage: str, loss: PreferenceLoss, *, log_to_loggers: bool = True, seqrec=None,
              providers: dict[str, Any] | None = None, ref_cache=None, negatives_scorer=None) -> RecLitModule:
    """Train the 'default' adapter for one stage with ``loss``; resumes from the stage's last checkpoint."""
    cfg = job.cfg
    # Reseed at every stage boundary from (seed, stage): dropout and anything else drawn from the global
    # RNGs do not depend on what ran before (an SFT stage trained here, or its adapter found cached).
    L.seed_everything(stage_seed(int(cfg.seed), stage), workers=True, verbose=False)
    settings = stage_settings(cfg, stage)
    dm = build.datamodule(cfg, job.prepared, job.tokenizer, stage, negatives_scorer)
    for name, factory in (providers or {}).items():
        if name in dm.negative_sampler.needs_provider():
            with build.autocast(cfg, job.model):
                dm.negative_sampler.set_provider(name, factory(dm))
    missing = dm.negative_sampler.needs_provider()
    if missing:
        raise ValueError(f"negatives strategy needs {missing}, which this run cannot provide")
    layout = job.layout
    module = RecLitModule(job.model, loss, job.tokenizer.pad_token_id, settings, layout, stage, seqrec,
                          torch.tensor(job.prepared.train_counts, dtype=torch.float32),
                          ref_cache=ref_cache if loss.needs_reference else None)
    loss_cfg = cfg.loss if stage == PREF or cfg.loss.stage == SFT else {"name": SFT}
    identity = checkpoint_identity(cfg, stage, job.prepared, loss_cfg)
    callbacks = [job.history.for_stage(stage), *build.callbacks(cfg),
                 *build.curve_callbacks(cfg, job.prepared, job.model, job.tokenizer, job.history, stage),
                 ResumeState(identity, f"{cfg.model.name} / {job.prepared.name} / {stage} {loss_cfg['name']}",
                             dm.index_sampler, job.history), HeapTrim()]
    ckpt_dir = Path(job.out_dir) / CHECKPOINTS / stage
    every = int(cfg.checkpoint.every_n_steps)
    if every > 0:
        callbacks.append(ModelCheckpoint(dirpath=str(ckpt_dir), filename="step{step}", save_top_k=0,
                                         save_last=True, every_n_train_steps=every, enable_version_counter=False))
    resume_from = ckpt_dir / "last.ckpt"
    if resume_from.is_file():
        check_checkpoint(resume_from, identity)
    loggers = job.loggers if stage != SFT else [StageLogger(lg, SFT) for lg in job.loggers]  # sft/... in W&B
    trainer = build.trainer(cfg, settings, callbacks, loggers if log_to_loggers else False, every > 0, job.out_dir)
    module.train()  # HF models load in eval mode; LoRA dropout must be active while training
    if seqrec is not None:
        seqrec.eval()
    start = time.perf_counter()
    with build.activation_checkpointing(job.model, settings.get("activation_checkpointing")):
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume_from.is_file() else None)
    release_memory()
    module.fit_seconds = time.perf_counter() - start
    module.datamodule = dm
    log.info("%s stage: %d steps in %.1f s (%s layout, %d epochs at most)", stage, trainer.global_step,
             module.fit_seconds, layout, settings["epochs"])
    return module


def sft_adapter(job: Job) -> tuple[Path, bool]:
    """Return (path of the SFT adapter, reused?), training it with the SFT objective and caching it
    under ``<cache>/sft_adapters/`` when missing; the model holds the adapter either way.

    Concurrent jobs serialise on the entry's lock (one trains, the others reuse). Under DDP only rank 0
    takes it and publishes: the other ranks start while rank 0 holds it (inside trainer.fit), train
    alongside, and read the adapter (as the reference) only after the barrier."""
    cfg = job.cfg
    entry = CacheEntry(Path(cfg.paths.cache_dir) / "sft_adapters" /
                       f"{cfg.model.name}-{job.prepared.name}-{sft_key(cfg, job.prepared)}", WEIGHTS)
    zero = build.global_rank() == 0
    with entry.lock(enabled=zero):
        if entry.ready:
            log.info("Reusing the cached SFT adapter %s", entry.path)
            load_adapter_into(job.model, entry.path)
            return entry.path, True
        log.info("No cached SFT adapter for these settings: training SFT first")
        fit_stage(job, SFT, SFTLoss(history_weight=float(cfg.sft.history_weight)))
        if zero:
            with entry.staging() as tmp:
                job.model.save_pretrained(str(tmp), selected_adapters=["default"])
                stable_adapter_config(tmp)
                atomic_write_text(tmp / "napo_lab_sft.json", json.dumps(
                    {"model": model_identity(cfg), "dataset": job.prepared.name, "sft": canonical(cfg.sft),
                     "seed": int(cfg.seed)}, indent=2, sort_keys=True, default=str))
        build.barrier()  # DDP: the other ranks read the adapter only once rank 0 has written it
    return entry.path, False
