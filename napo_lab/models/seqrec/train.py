"""Training and candidate evaluation of sequential recommenders on a prepared dataset."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
import warnings
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from napo_lab.models.seqrec.base import SeqRecModel, pad_histories
from napo_lab.models.seqrec.config import SeqRecConfig
from napo_lab.models.seqrec.factory import build_seqrec
from napo_lab.models.seqrec.lit import SeqRecLightning

log = logging.getLogger(__name__)


def split_arrays(df: pd.DataFrame, max_len: int) -> dict[str, np.ndarray]:
    """A prepared split -> int64 arrays: history [N, max_len] (-1 right-padded, last items kept),
    target [N], and for evaluation splits candidates [N, C] and target_index [N]."""
    out = {
        "history": pad_histories(df["history"].tolist(), max_len),
        "target": np.array(df["target"], dtype=np.int64),  # copies: arrow-backed views are read-only
        "user": np.array(df["user"], dtype=np.int64),
    }
    if "candidates" in df.columns:
        cands = np.stack([np.asarray(c, dtype=np.int64) for c in df["candidates"]])
        hit = cands == out["target"][:, None]
        if not hit.any(1).all():
            raise ValueError("some evaluation rows do not contain their target among the candidates")
        out["candidates"], out["target_index"] = cands, hit.argmax(1).astype(np.int64)
    return out


@torch.no_grad()
def candidate_logits(
    model: SeqRecModel, history: np.ndarray, candidates: np.ndarray, batch_size: int = 2048
) -> np.ndarray:
    """Logits of each row's candidates: float64 [N, C] (equal to gathering ``model.scores``)."""
    was_training = model.training
    model.eval()
    device = model.item_emb.weight.device
    parts = []
    for start in range(0, len(history), batch_size):
        h = torch.as_tensor(history[start : start + batch_size], device=device)
        c = torch.as_tensor(candidates[start : start + batch_size], device=device)
        parts.append(model.candidate_scores(h, c).double().cpu())
    model.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros((0, candidates.shape[1]))


@torch.no_grad()
def all_item_scores(model: SeqRecModel, history: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """float32 [N, n_items]: every item's score for each row (eval mode; the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    device = model.item_emb.weight.device
    parts = [model.scores(torch.as_tensor(history[s : s + batch_size], device=device)).float().cpu()
             for s in range(0, len(history), batch_size)]
    model.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.n_items), np.float32)


def evaluate_split(model: SeqRecModel, df: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Score an evaluation split; returns (arrays incl. ``scores``, ranking metrics)."""
    from napo_lab.metrics.ranking import ranking_metrics

    arrays = split_arrays(df, model.max_len)
    arrays["scores"] = candidate_logits(model, arrays["history"], arrays["candidates"])
    metrics = ranking_metrics(arrays["scores"], arrays["target_index"], ks=(1, 5, 10))
    return arrays, {k: float(v) for k, v in metrics.items()}


def _accelerator(device: str) -> str:
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if device.startswith("cuda") else "cpu"


@contextlib.contextmanager
def isolated_global_state(num_threads: int | None):
    """Undo what training changes process-wide (RNG streams, deterministic-algorithms flag, thread
    count, Lightning's log level and env vars), so that training the auxiliary model inside a NAPO run
    leaves that run's randomness identical whether the model came from the cache or not."""
    saved_rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    saved_det = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    saved_env = {
        k: os.environ.get(k) for k in ("CUBLAS_WORKSPACE_CONFIG", "PL_GLOBAL_SEED", "PL_SEED_WORKERS")
    }
    threads = torch.get_num_threads()
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # no "GPU available" banners for an auxiliary model
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*number of training batches.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # lightning 2.6 on torch 2.13
            warnings.filterwarnings("ignore", message=".*IterableDataset.*__len__.*")  # one process, exact
            yield
    finally:
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        torch.set_rng_state(saved_rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.use_deterministic_algorithms(saved_det[0], warn_only=saved_det[1])
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        torch.set_num_threads(threads)
        lightning_log.setLevel(level)


def _negative_loader(prepared: Any, train: dict[str, np.ndarray], cfg: SeqRecConfig):
    """Training batches with the configured sampler's negatives (napo_lab.data.negatives)."""
    from napo_lab.data.negatives import NegativeDrawer, NegativeSpec, UserItems
    from napo_lab.models.seqrec.negative_batches import NegativeBatches

    spec = NegativeSpec.from_cfg(cfg.negatives)
    user_items = UserItems.from_rows(prepared.split("train"), prepared.n_items)
    drawer = NegativeDrawer(spec, prepared.n_items, user_items.frequency(), user_items)
    batches = NegativeBatches(train["history"], train["target"], train["user"], drawer, cfg.batch_size,
                              cfg.seed, spec.static_after_epochs)
    return DataLoader(batches, batch_size=None), spec


def train_seqrec(prepared: Any, cfg: SeqRecConfig | Any, logger: Any = None) -> tuple[SeqRecModel, dict]:
    """Train on ``prepared.split("train")``, keep the epoch with the best validation ``cfg.monitor``.

    Deterministic for a given seed on a given device. Returns the model (on CPU, train mode) and an
    info dict (best epoch, epochs run, seconds, best validation metrics).
    """
    cfg = SeqRecConfig.from_cfg(cfg)
    val_split = cfg.val_split or prepared.manifest.get("default_val_split", "val")
    with isolated_global_state(cfg.num_threads), tempfile.TemporaryDirectory(prefix="seqrec-") as root:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        model = build_seqrec(cfg, prepared.n_items)
        train = split_arrays(prepared.split("train"), cfg.max_len)
        val = split_arrays(prepared.split(val_split), cfg.max_len)
        spec = None
        if cfg.negatives is not None:
            train_loader, spec = _negative_loader(prepared, train, cfg)
        else:
            train_loader = DataLoader(
                TensorDataset(torch.from_numpy(train["history"]), torch.from_numpy(train["target"])),
                batch_size=cfg.batch_size,
                shuffle=True,
                generator=torch.Generator().manual_seed(cfg.seed),
            )
        val_loader = DataLoader(
            TensorDataset(*(torch.from_numpy(val[k]) for k in ("history", "candidates", "target_index", "target"))),
            batch_size=2048,
        )
        lit = SeqRecLightning(model, cfg.lr, cfg.weight_decay, cfg.loss, cfg.num_negatives, cfg.monitor,
                              top_k=spec.top_k if spec is not None and spec.adaptive else 0,
                              adam_beta2=cfg.adam_beta2)
        early_stop = L.pytorch.callbacks.EarlyStopping(
            monitor=f"seqrec/val_{cfg.monitor}", mode="max", patience=cfg.patience
        )
        trainer = L.Trainer(
            accelerator=_accelerator(cfg.device),
            devices=1,
            max_epochs=cfg.max_epochs,
            callbacks=[early_stop],
            logger=logger if logger is not None else False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=True,
            default_root_dir=root,
        )
        start = time.perf_counter()
        trainer.fit(lit, train_loader, val_loader)
    seconds = time.perf_counter() - start
    model = lit.model.cpu()
    if lit.best_state is not None:
        model.load_state_dict(lit.best_state)
    info = {
        "best_epoch": lit.best_epoch,
        "epochs_run": trainer.current_epoch,
        "train_seconds": seconds,
        "val_split": val_split,
        "best_val": lit.best_metrics,
    }
    log.info(
        "seqrec %s trained in %.1fs, best epoch %d, val %s",
        cfg.arch,
        seconds,
        lit.best_epoch,
        lit.best_metrics,
    )
    return model, info
