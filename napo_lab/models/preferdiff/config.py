"""Typed configuration of PreferDiff (conf/model/preferdiff.yaml keys).

Defaults are the public code's (lswhim/PreferDiff: default.yaml, models/PreferDiff/config.yaml and
the README command), except the embedding size: the paper and code use 3072; napo_lab defaults to 64
so that a CPU can run it (the size is the first thing the study sweeps).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Keys of the model group that do not change the trained weights.
NON_TRAINING_KEYS = ("kind", "name", "arch", "device", "num_threads", "_target_", "cache_dir")
MODEL_KEYS = ("hidden_size", "max_len", "num_layers", "num_heads", "dropout", "timesteps", "beta_start",
              "beta_end", "beta_schedule", "ddim_step", "ddim_align_time", "guidance_w", "p_uncond", "gamma",
              "lam", "reduction", "error")


@dataclass
class PreferDiffConfig:
    hidden_size: int = 64  # paper/code: 3072; even (the sinusoidal time embedding needs it)
    max_len: int = 10  # history window (code: max_seq_length 10)
    num_layers: int = 1  # encoder blocks (code: layer_num 1)
    num_heads: int = 2  # (code: num_heads 2)
    dropout: float = 0.1  # (code: dropout 0.1)
    timesteps: int = 2000  # T (code: timesteps 2000)
    beta_start: float = 1e-4  # linear betas (code: beta_start 0.0001, beta_end 0.02)
    beta_end: float = 0.02
    beta_schedule: str = "linear"  # linear | cosine
    ddim_step: int = 100  # DDIM stride: indices 0, 100, ..., 2000 = 21 steps (code: ddim_step 100)
    ddim_align_time: bool = False  # False = the code's time index (see diffusion.py)
    guidance_w: float = 4.0  # classifier-free guidance (code config: 4; README command: 2; best: 2/8/6)
    p_uncond: float = 0.1  # probability of the null condition in training (code: p 0.1)
    gamma: float = 5.0  # preference temperature (code: gamma 5.0)
    lam: float = 0.5  # weight of the generative term (code config 0.5; README/best 0.4-0.6)
    reduction: str = "batch"  # batch (code: batch means before the sigmoid) | per_example
    error: str = "cosine"  # cosine (README command) | l2 (code config default)
    lr: float = 1e-4  # AdamW (code: lr 1e-4 for PreferDiff)
    weight_decay: float = 0.0
    batch_size: int = 256  # (code: train_batch_size 256)
    max_epochs: int = 150  # (code: epochs 150)
    patience: int = 10  # epochs without improvement of `monitor` (code: patience 10)
    monitor: str = "full/recall@5"  # (code: val_metric recall@5, full catalogue); or rank/ndcg@10 etc.
    mask_history: bool = False  # full ranking: drop history items first (code: no)
    eval_seed: int = 0  # seed of the sampling noise at evaluation (results are then reproducible)
    val_split: str | None = None  # None = the prepared dataset's default_val_split
    seed: int = 42
    device: str = "cpu"  # cpu | cuda | auto (training only; the returned model is on CPU)
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.hidden_size % 2 or self.hidden_size < 4:
            raise ValueError(f"preferdiff hidden_size must be even and >= 4, got {self.hidden_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.reduction not in ("batch", "per_example"):
            raise ValueError(f"preferdiff reduction must be batch or per_example, got {self.reduction!r}")
        if self.error not in ("cosine", "l2"):
            raise ValueError(f"preferdiff error must be cosine or l2, got {self.error!r}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"preferdiff lam must be in [0, 1], got {self.lam}")
        if self.batch_size < 2:
            raise ValueError("preferdiff needs batch_size >= 2 (the negatives are the other rows)")
        if not self.monitor.startswith(("full/", "rank/")):
            raise ValueError(f"preferdiff monitor must be full/<metric> or rank/<metric>, got {self.monitor!r}")

    @classmethod
    def from_cfg(cls, cfg: Any) -> PreferDiffConfig:
        """From a dict / DictConfig / PreferDiffConfig; unknown keys are logged and ignored."""
        if isinstance(cfg, PreferDiffConfig):
            return dataclasses.replace(cfg)
        return dataclass_from_mapping(cls, cfg, NON_TRAINING_KEYS)

    def model_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in MODEL_KEYS}

    def training_key(self) -> dict[str, Any]:
        skip = {"device", "num_threads"}
        return {"arch": "preferdiff"} | {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                         if f.name not in skip}


def dataclass_from_mapping(cls: type, cfg: Any, ignored: tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from a mapping, coercing YAML strings like "1e-4" to the field's type."""
    if cfg is None:
        cfg = {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{cls.__name__} config must be a mapping, got {type(cfg).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in cfg if k not in fields and k not in ignored)
    if unknown:
        log.warning("%s: ignoring unknown keys %s", cls.__name__, unknown)
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for k, v in cfg.items():
        if k not in fields:
            continue
        default = getattr(defaults, k)
        if v is not None and isinstance(default, bool):
            v = v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
        elif v is not None and isinstance(default, float):
            v = float(v)
        elif v is not None and isinstance(default, int):
            v = int(v)
        kwargs[k] = v
    return cls(**kwargs)
