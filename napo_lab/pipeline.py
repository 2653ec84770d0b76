"""The steps of a run, each a function: data, model, SFT adapter (cached), a training stage,
evaluation. ``napo_lab.run`` strings them together; ``napo_lab.evaluate`` reuses the same pieces.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from napo_lab.data.datamodule import RecDataModule
from napo_lab.data.prepared import PreparedDataset
from napo_lab.eval.generation import generate_answers
from napo_lab.eval.metrics import prefix_keys
from napo_lab.eval.predictions import metrics_from_predictions
from napo_lab.eval.ranking import score_candidates
from napo_lab.lit.callbacks import MetricsHistory
from napo_lab.lit.checkpoint import AtomicCheckpointIO, ResumeState, check_checkpoint
from napo_lab.lit.module import REFERENCE_ADAPTER, RecLitModule
from napo_lab.models.llm import apply_lora, load_llm
from napo_lab.models.logprobs import choose_layout

log = logging.getLogger(__name__)

SFT_CACHE_VERSION = 1


def plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(plain(obj), sort_keys=True, default=str).encode()).hexdigest()[:n]


# ---------------------------------------------------------------------------------------------
# Data and model
# ---------------------------------------------------------------------------------------------
def load_data(cfg: DictConfig) -> PreparedDataset:
    from napo_lab.prepare import ensure_prepared

    root = ensure_prepared(cfg.dataset, data_dir=cfg.paths.data_dir, cache_dir=cfg.paths.cache_dir)
    return PreparedDataset.load(root)


def load_model(cfg: DictConfig):
    """Base model + tokenizer + a freshly initialised (seeded) LoRA adapter named 'default'."""
    model, tokenizer = load_llm(cfg.model, cfg.paths.cache_dir)
    if cfg.model.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    return apply_lora(model, cfg.model.lora), tokenizer


def model_identity(cfg: DictConfig) -> dict[str, Any]:
    m = plain(cfg.model)
    return {k: m.get(k) for k in ("source", "name_or_path", "gguf_package", "gguf_file", "revision", "dtype",
                                  "hidden_size", "num_layers", "init_seed", "chat_template", "lora")}


# ---------------------------------------------------------------------------------------------
# Training stages
# ---------------------------------------------------------------------------------------------
def global_rank() -> int:
    """This process's rank (0 outside DDP). Valid before any Trainer exists: Lightning reads it from
    RANK / LOCAL_RANK / SLURM_PROCID, which its launcher (or Slurm, torchrun) sets for every rank > 0."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _world_size(cfg: DictConfig) -> int:
    devices = cfg.trainer.get("devices", 1)
    n = len(devices) if isinstance(devices, list | tuple) or OmegaConf.is_list(devices) else int(
        devices if str(devices).isdigit() else 1)
    return max(1, n) * int(cfg.trainer.get("num_nodes", 1))


def accumulation(stage_cfg: Mapping[str, Any], world: int) -> int:
    """Accumulation steps that keep the global batch constant across device counts."""
    micro, glob = int(stage_cfg["batch_size"]), stage_cfg.get("global_batch_size")
    if glob is None:
        return 1
    glob = int(glob)
    if glob % (micro * world):
        raise ValueError(f"global_batch_size={glob} is not a multiple of batch_size x devices = "
                         f"{micro} x {world}; change one of them.")
    return glob // (micro * world)


def build_strategy(cfg: DictConfig):
    s = plain(cfg.strategy)
    name = s.get("name", "auto")
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        backend = s.get("process_group_backend") or ("nccl" if torch.cuda.is_available() else "gloo")
        return DDPStrategy(process_group_backend=backend,
                           find_unused_parameters=bool(s.get("find_unused_parameters", False)))
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        layers = set()
        for layer in s.get("auto_wrap_layers") or []:
            for mod in ("llama", "qwen2"):
                try:
                    m = __import__(f"transformers.models.{mod}.modeling_{mod}", fromlist=[layer])
                    layers.add(getattr(m, layer))
                except (ImportError, AttributeError):
                    continue
        return FSDPStrategy(auto_wrap_policy=layers or None, use_orig_params=bool(s.get("use_orig_params", True)),
                            sharding_strategy=s.get("sharding_strategy", "FULL_SHARD"))
    return name


def make_logger(cfg: DictConfig, out_dir: Path):
    kind = cfg.logger.get("name", "none")
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(out_dir), name="csv", version="")
    if kind == "wandb":
        from napo_lab.lit.wandb import make_wandb_logger

        return make_wandb_logger(cfg, out_dir)
    raise ValueError(f"logger={kind!r} is unknown; use wandb, csv or none")


def fit_stage(cfg: DictConfig, stage: str, model, tokenizer, prepared: PreparedDataset, loss_cfg: DictConfig,
              out_dir: Path, logger=False, seqrec=None, history: MetricsHistory | None = None,
              negative_providers: Mapping[str, Any] | None = None, loss=None, ref_cache=None,
              negatives_scorer=None) -> RecLitModule:
    """Train the 'default' adapter for one stage ('sft' or 'pref') with the loss of ``loss_cfg``.
    With a ``neg_sampler`` the preference stage's negatives are drawn per batch (``negatives_scorer``:
    the sequential model that ranks adaptive pools when ``neg_sampler.scorer=seqrec``)."""
    stage_cfg = plain(cfg[stage])
    dataset_cfg = dict(plain(cfg.dataset))
    dataset_cfg["train_limit"] = stage_cfg.get("train_limit", dataset_cfg.get("train_limit"))
    neg_sampler = cfg.get("neg_sampler") if stage == "pref" else None
    k = 0 if stage == "sft" or neg_sampler else int(loss_cfg.num_negatives)
    dm = RecDataModule(prepared, tokenizer, dataset_cfg, k, plain(loss_cfg.get("negatives")),
                       stage_cfg["batch_size"], cfg.data.eval_batch_size, cfg.data.num_workers, int(cfg.seed),
                       bool(cfg.model.get("chat_template", False)))
    if neg_sampler:
        from napo_lab.data.batch_negatives import for_preference_stage

        dm.batch_negatives = for_preference_stage(neg_sampler, prepared, dm.builder.title_ids, int(cfg.seed),
                                                  dm.max_history, negatives_scorer)
    for name, factory in (negative_providers or {}).items():
        if name in dm.negative_sampler.needs_provider():
            dm.negative_sampler.set_provider(name, factory(dm))
    missing = dm.negative_sampler.needs_provider()
    if missing:
        raise ValueError(f"negatives strategy needs {missing}, which this run cannot provide")
    loss = instantiate(loss_cfg.objective) if loss is None else loss
    layout = choose_layout(cfg.forward, model, cfg.strategy.get("name"))
    module = RecLitModule(model, loss, tokenizer.pad_token_id, stage_cfg, layout, stage, seqrec,
                          torch.tensor(prepared.train_counts, dtype=torch.float32),
                          ref_cache=ref_cache if stage == "pref" and getattr(loss, "needs_reference", False) else None)
    world = _world_size(cfg)
    callbacks = [history.for_stage(stage)] if history is not None else []
    ckpt_cfg = plain(cfg.get("checkpoint")) or {}
    ckpt_dir = Path(out_dir) / "checkpoints" / stage
    identity = digest({"model": model_identity(cfg), "data": prepared.name, "stage": stage_cfg,
                       "loss": plain(loss_cfg), "seed": int(cfg.seed)})
    callbacks.append(ResumeState(identity, f"{cfg.model.name} / {prepared.name} / {stage} {loss_cfg.name}",
                                 dm.index_sampler))
    every = int(ckpt_cfg.get("every_n_steps", 0) or 0)
    if every > 0:
        callbacks.append(ModelCheckpoint(dirpath=str(ckpt_dir), filename="step{step}", save_top_k=0,
                                         save_last=True, every_n_train_steps=every, enable_version_counter=False))
    resume_from = ckpt_dir / "last.ckpt"
    if resume_from.is_file():
        check_checkpoint(resume_from, identity)
    t = plain(cfg.trainer)
    trainer = L.Trainer(
        accelerator=t.get("accelerator", "auto"), devices=t.get("devices", 1), num_nodes=t.get("num_nodes", 1),
        precision=t.get("precision", "32-true"), strategy=build_strategy(cfg),
        max_epochs=int(stage_cfg["epochs"]), max_steps=int(stage_cfg.get("max_steps", -1)),
        accumulate_grad_batches=accumulation(stage_cfg, world),
        gradient_clip_val=t.get("gradient_clip_val"), log_every_n_steps=t.get("log_every_n_steps", 1),
        deterministic=t.get("deterministic", False), enable_progress_bar=t.get("enable_progress_bar", True),
        logger=logger, callbacks=callbacks, enable_checkpointing=every > 0, num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        limit_val_batches=0, default_root_dir=str(out_dir), enable_model_summary=False,
        use_distributed_sampler=False,  # EpochIndexSampler shards itself (same global batches as 1 process)
    )
    module.train()  # HF models load in eval mode; LoRA dropout must be active while training
    if seqrec is not None:
        seqrec.eval()
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume_from) if resume_from.is_file() else None)
    module.fit_seconds = time.perf_counter() - start
    module.datamodule = dm
    log.info("%s stage: %d steps in %.1f s (%s layout)", stage, trainer.global_step, module.fit_seconds, layout)
    return module


def save_adapter(model, path: Path, adapter: str = "default") -> None:
    """Write one adapter's weights + config atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".tmp"))
    try:
        model.save_pretrained(str(tmp), selected_adapters=[adapter])
        src = tmp if adapter == "default" else tmp / adapter
        if path.exists():
            shutil.rmtree(path)
        os.replace(src, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_adapter_into(model, path: Path, adapter: str = "default") -> None:
    """Copy saved LoRA weights into an existing adapter slot (keeps it trainable)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = Path(path) / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: not a saved napo_lab adapter")
    result = set_peft_model_state_dict(model, load_file(str(weights)), adapter_name=adapter)
    bad = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if bad:
        raise ValueError(f"{weights} does not fit this model (unexpected keys such as {bad[0]}); "
                         "it was trained with another model or LoRA config.")


def sft_key(cfg: DictConfig, prepared: PreparedDataset) -> str:
    stage = {k: v for k, v in plain(cfg.sft).items()}
    return digest({"v": SFT_CACHE_VERSION, "model": model_identity(cfg), "data": prepared.root.name,
                   "sft": stage, "seed": int(cfg.seed), "forward": cfg.forward,
                   "domain": cfg.dataset.get("domain"), "n_candidates": cfg.dataset.get("n_candidates")})


def ensure_sft_adapter(cfg: DictConfig, model, tokenizer, prepared: PreparedDataset, out_dir: Path,
                       history: MetricsHistory | None = None, logger=False) -> tuple[Path, bool]:
    """Return (path of the SFT adapter, reused?), training and caching it when missing."""
    path = Path(cfg.paths.cache_dir) / "sft_adapters" / f"{cfg.model.name}-{prepared.name}-{sft_key(cfg, prepared)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Concurrent jobs serialise on the lock (one trains, the others reuse). Under DDP only rank 0 takes
    # it: the other ranks start while rank 0 holds it (inside trainer.fit) and only follow rank 0's
    # choice, which cannot change under them because every writer holds the lock.
    zero = global_rank() == 0
    with FileLock(str(path) + ".lock") if zero else contextlib.nullcontext():
        if (path / "adapter_model.safetensors").is_file():
            log.info("Reusing the cached SFT adapter %s", path)
            load_adapter_into(model, path)
            return path, True
        log.info("No cached SFT adapter for these settings: training SFT first")
        sft_loss = OmegaConf.create({"name": "sft", "stage": "sft", "num_negatives": 0, "negatives": None,
                                     "objective": {"_target_": "napo_lab.losses.sft.SFTLoss"}})
        fit_stage(cfg, "sft", model, tokenizer, prepared, sft_loss, out_dir, logger=logger, history=history)
        if zero:
            save_adapter(model, path)
            (path / "napo_lab_sft.json").write_text(json.dumps(
                {"model": model_identity(cfg), "dataset": prepared.name, "sft": plain(cfg.sft),
                 "seed": int(cfg.seed)}, indent=2, sort_keys=True, default=str))
        _barrier()  # DDP: the other ranks read the adapter (reference) only once rank 0 has written it
    return path, False


def eval_datamodule(cfg: DictConfig, prepared: PreparedDataset, tokenizer) -> RecDataModule:
    """A data module that only serves evaluation (no training stage ran in this process)."""
    return RecDataModule(prepared, tokenizer, dict(plain(cfg.dataset)), 0, None, 1, cfg.data.eval_batch_size,
                         cfg.data.num_workers, int(cfg.seed), bool(cfg.model.get("chat_template", False)))


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def attach_reference(model, sft_path: Path) -> None:
    """Load the SFT adapter a second time, frozen, as the reference policy."""
    model.load_adapter(str(sft_path), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    model.set_adapter("default")
    for n, p in model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in n:
            p.requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def evaluate(cfg: DictConfig, model, tokenizer, prepared: PreparedDataset, dm: RecDataModule, out_dir: Path,
             roles=None) -> dict[str, float]:
    """Evaluate every configured split; write predictions_<role>.parquet; return flat metrics."""
    ev = plain(cfg.eval)
    protocol = ev.get("protocol", "generation")
    if protocol not in ("generation", "ranking", "both"):
        raise ValueError(f"eval.protocol={protocol!r}; use generation, ranking or both")
    pop = ev.get("popularity") or {}
    bands = prepared.popularity_bands(float(pop.get("head_ratio", 0.2)), float(pop.get("tail_ratio", 0.2)))
    titles = [dm.builder.short(i) for i in range(prepared.n_items)]
    metrics: dict[str, float] = {}
    for role in roles or ev.get("splits", ["test"]):
        loader = dm.eval_dataloader(role)
        rows = loader.dataset.rows
        pred = pd.DataFrame({"user": rows["user"].astype("int64"), "target": rows["target"].astype("int64"),
                             "candidates": [list(map(int, c)) for c in rows["candidates"]]})
        start = time.perf_counter()
        if protocol in ("generation", "both"):
            texts = generate_answers(model, tokenizer, loader, int(ev.get("max_new_tokens", 20)), f"{role}: generate")
            pred["generated"] = texts
            metrics[f"{role}/gen_seconds_per_user"] = (time.perf_counter() - start) / max(1, len(rows))
        else:
            pred["generated"] = ""
        if protocol in ("ranking", "both"):
            t0 = time.perf_counter()
            layout = "shared_prefix" if cfg.forward == "shared_prefix" else "duplicate"
            summed, normed = score_candidates(model, dm.builder.title_ids, loader, tokenizer.pad_token_id, layout,
                                              f"{role}: rank")
            pred["scores"], pred["scores_norm"] = list(summed), list(normed)
            metrics[f"{role}/rank_seconds_per_user"] = (time.perf_counter() - t0) / max(1, len(rows))
        else:
            pred["scores"] = [[] for _ in range(len(pred))]
        m = metrics_from_predictions(pred, titles, prepared.train_counts, bands,
                                     tail_ratio=float(pop.get("tail_ratio", 0.2)), ks=(1, 5, 10),
                                     pop_ks=tuple(pop.get("ks", (1, 5))), generation=protocol != "ranking")
        pred["matched"] = _matched_ids(pred, titles, protocol)
        pred.to_parquet(out_dir / f"predictions_{role}.parquet", index=False)
        metrics.update(prefix_keys(m, role))
    return {k: float(v) for k, v in metrics.items()}


def _matched_ids(pred: pd.DataFrame, titles, protocol: str) -> list[int]:
    """The answer each row counts as: the single matched candidate (generation; -1 if invalid) or the
    top-scored one (ranking, ties broken against the target exactly as the rank metrics do)."""
    from napo_lab.eval.matching import matched_index
    from napo_lab.eval.metrics import topk_items

    cands = np.stack([np.asarray(c, dtype=np.int64) for c in pred["candidates"]])
    if protocol == "ranking":
        target_pos = np.argmax(cands == pred["target"].to_numpy()[:, None], axis=1)
        return topk_items(np.stack(pred["scores"].to_numpy()), cands, 1, target_pos)[:, 0].tolist()
    pos = [matched_index(text, [titles[c] for c in row], "sdpo") for text, row in zip(pred["generated"], cands)]
    return [int(row[i]) if i >= 0 else -1 for i, row in zip(pos, cands)]
