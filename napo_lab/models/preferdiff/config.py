"""Typed configuration of PreferDiff (conf/model/preferdiff.yaml keys).

Defaults are the public code's (lswhim/PreferDiff: default.yaml, models/PreferDiff/config.yaml and
the README command), except the embedding size: the paper and code use 3072; napo_lab defaults to 64
so that a CPU can run it (the size is the first thing the study sweeps).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Literal

from napo_lab.config.check import dataclass_from_mapping, spec

log = logging.getLogger(__name__)

#: Keys of the model group that do not change the trained weights.
NON_TRAINING_KEYS = ("_target_", "kind", "name", "arch", "device", "num_threads", "cache_dir")
MODEL_KEYS = ("hidden_size", "max_len", "num_layers", "num_heads", "dropout", "timesteps", "beta_start",
              "beta_end", "beta_schedule", "ddim_step", "ddim_align_time", "guidance_w", "p_uncond", "gamma",
              "lam", "reduction", "error")
MONITOR = Literal["full/recall@5", "full/recall@10", "full/ndcg@5", "full/ndcg@10", "rank/hr@1", "rank/hr@5",
                  "rank/hr@10", "rank/ndcg@5", "rank/ndcg@10", "rank/mrr"]


@dataclass
class PreferDiffConfig:
    """PreferDiff and how it is trained (conf/model/preferdiff.yaml). Sources in the comments:
    ``config.yaml`` = the public models/PreferDiff/config.yaml, ``default.yaml`` its default.yaml."""

    kind: Literal["seqrec"] = spec("seqrec", "a sequential model (trained and cached like SASRec)")
    name: str = spec("preferdiff", "the model's name (reports)")
    arch: Literal["preferdiff"] = spec("preferdiff", "architecture")
    hidden_size: int = spec(64, "embedding size (paper/code: 3072); even (sinusoidal time embedding)", ge=4)
    max_len: int = spec(10, "history window (default.yaml: max_seq_length 10)", ge=1)
    num_layers: int = spec(1, "encoder blocks (config.yaml: layer_num 1)", ge=1)
    num_heads: int = spec(2, "encoder attention heads (config.yaml: 2)", ge=1)
    dropout: float = spec(0.1, "encoder dropout (config.yaml: 0.1)", ge=0, lt=1)
    timesteps: int = spec(2000, "diffusion steps T (config.yaml: 2000)", ge=2)
    beta_start: float = spec(1e-4, "first beta of the linear schedule (config.yaml: 0.0001)", gt=0, lt=1)
    beta_end: float = spec(0.02, "last beta (config.yaml: 0.02)", gt=0, lt=1)
    beta_schedule: Literal["linear", "cosine"] = spec("linear", "beta schedule (config.yaml: linear)")
    ddim_step: int = spec(100, "DDIM stride: indices 0, 100, ..., 2000 = 21 steps (config.yaml: 100)", ge=1)
    ddim_align_time: bool = spec(False, "false = the code's DDIM time index (t = n * step); true = the "
                                        "schedule's own step")
    guidance_w: float = spec(4.0, "classifier-free guidance w (config.yaml 4; README command 2)", ge=0)
    p_uncond: float = spec(0.1, "probability of the null condition in training (config.yaml: p 0.1)", ge=0, lt=1)
    gamma: float = spec(5.0, "preference temperature (config.yaml: 5.0)", ge=0)
    lam: float = spec(0.5, "weight of the generative term (config.yaml 0.5; README 0.4)", ge=0, le=1)
    reduction: Literal["batch", "per_example"] = spec("batch", "batch: l_pos, l_neg are batch means before the "
                                                               "sigmoid (the code); per_example")
    error: Literal["cosine", "l2"] = spec("cosine", "reconstruction error (README command: cosine)")
    lr: float = spec(1e-4, "AdamW learning rate (config.yaml: 1e-4)", gt=0)
    weight_decay: float = spec(0.0, "AdamW weight decay (default.yaml: 0)", ge=0)
    batch_size: int = spec(256, "rows per step (default.yaml: 256)", ge=2)
    max_epochs: int = spec(150, "epochs at most (default.yaml: 150)", ge=1)
    patience: int = spec(10, "epochs without improvement of monitor (default.yaml: 10)", ge=1)
    monitor: MONITOR = spec("full/recall@5", "early-stopping metric (default.yaml: recall@5, full catalogue)")
    mask_history: bool = spec(False, "full ranking removes the row's history items first (the code: no)")
    eval_seed: int = spec(0, "seed of the sampling noise at evaluation (reproducible scores)", ge=0)
    val_split: str | None = spec(None, "split for early stopping; null = the manifest's default_val_split")
    seed: int = spec(42, "seed of the training run", ge=0)
    device: Literal["cpu", "cuda", "auto"] = spec("cpu", "training device (the returned model is on CPU)")
    num_threads: int | None = spec(1, "torch CPU threads while training (null = unchanged)", ge=1)
    cache_dir: str | None = spec(None, "null = paths.cache_dir")

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
        if self.monitor not in MONITOR.__args__:
            raise ValueError(f"preferdiff monitor must be one of {', '.join(MONITOR.__args__)}, got {self.monitor!r}")

    @classmethod
    def from_cfg(cls, cfg: Any) -> PreferDiffConfig:
        """From a dict / DictConfig / PreferDiffConfig; unknown keys are logged and ignored."""
        if isinstance(cfg, PreferDiffConfig):
            return dataclasses.replace(cfg)
        return dataclass_from_mapping(cls, cfg, ("_target_",))

    def model_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in MODEL_KEYS}

    def training_key(self) -> dict[str, Any]:
        """Everything that changes the trained weights: the cache key (with the dataset identity)."""
        return {"arch": "preferdiff"} | {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                         if f.name not in NON_TRAINING_KEYS}
