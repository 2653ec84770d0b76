"""Typed configuration of a sequential recommender, built from conf/model/<arch>.yaml or from the
``seqrec:`` block of a NAPO / RosePO config (same keys).

The cache key is derived from this object, so only keys that change the trained weights enter it
(``device``, ``num_threads``, ``kind`` and ``name`` do not).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Hyper-parameters each architecture actually reads; the others are ignored and kept out of its cache key.
ARCH_KEYS: dict[str, tuple[str, ...]] = {
    "sasrec": ("num_layers", "num_heads", "dropout"),
    "gru4rec": ("num_layers", "dropout"),
    "caser": ("n_h", "n_v", "dropout"),
}
#: Keys accepted for compatibility with the Hydra model group but irrelevant to the weights.
NON_TRAINING_KEYS = ("kind", "name", "device", "num_threads", "_target_", "cache_dir")
#: Early-stopping metrics: sampled over the val rows' candidates, or full-catalogue (``full/``).
MONITORS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr", "full/hr@10", "full/ndcg@10")


@dataclass
class SeqRecConfig:
    arch: str = "sasrec"  # sasrec | gru4rec | caser
    hidden_size: int = 64  # item embedding = user state size (LLaRA's SASRec uses 64)
    max_len: int = 10  # history window; the protocol shows at most 10 items
    num_layers: int = 2  # SASRec blocks / GRU layers
    num_heads: int = 1  # SASRec attention heads
    dropout: float = 0.2
    n_h: int = 16  # Caser: horizontal filters per height
    n_v: int = 4  # Caser: vertical filters
    loss: str = "ce"  # ce (full softmax) | bpr | sampled_softmax | bce (with a neg_sampler)
    num_negatives: int = 1  # uniform negatives per row for bpr / sampled_softmax (without a neg_sampler)
    # A napo_lab.data.negatives.NegativeSpec as a mapping (the neg_sampler group; None = no sampler):
    # its negatives feed `loss` (bce, bpr or sampled_softmax) instead of the built-in uniform ones.
    negatives: dict | None = None
    adam_beta2: float = 0.999  # the public negative-sampling code trains SASRec with Adam beta2 = 0.98
    lr: float = 0.002
    weight_decay: float = 0.0
    batch_size: int = 256
    max_epochs: int = 20
    patience: int = 3  # epochs without improvement of `monitor` on the val candidates
    monitor: str = "ndcg@10"  # a key of ranking_metrics (val candidates) or full/hr@10, full/ndcg@10
    val_split: str | None = None  # split for early stopping; None = manifest default_val_split
    seed: int = 42
    device: str = "cpu"  # cpu | cuda | auto (training only; the returned model is on CPU)
    num_threads: int | None = (
        1  # torch CPU threads while training (None = leave as is); 1 avoids oversubscription
    )

    @classmethod
    def from_cfg(cls, cfg: Any) -> SeqRecConfig:
        """Build from a dict / DictConfig / SeqRecConfig; unknown keys are logged and ignored."""
        if isinstance(cfg, SeqRecConfig):
            return dataclasses.replace(cfg)
        if cfg is None:
            cfg = {}
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        if not isinstance(cfg, Mapping):
            raise TypeError(f"seqrec config must be a mapping, got {type(cfg).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in cfg if k not in fields and k not in NON_TRAINING_KEYS)
        if unknown:
            log.warning("seqrec config: ignoring unknown keys %s", unknown)
        defaults = cls()
        kwargs: dict[str, Any] = {}
        for k, v in cfg.items():
            if k not in fields or v is None:
                continue
            default = getattr(defaults, k)
            # YAML 1.1 reads "1e-3" as a string: coerce numbers to the field's type.
            if isinstance(default, float):
                v = float(v)
            elif isinstance(default, int) and not isinstance(default, bool):
                v = int(v)
            kwargs[k] = v
        if "val_split" in cfg:
            kwargs["val_split"] = cfg["val_split"]
        out = cls(**kwargs)
        if out.arch not in ARCH_KEYS:
            raise ValueError(f"unknown seqrec arch {out.arch!r}; choose one of {sorted(ARCH_KEYS)}")
        if out.loss not in ("ce", "bpr", "sampled_softmax", "bce"):
            raise ValueError(f"unknown seqrec loss {out.loss!r}; choose ce, bpr, sampled_softmax or bce")
        if out.negatives is not None:
            from napo_lab.data.negatives import NegativeSpec

            out.negatives = dataclasses.asdict(NegativeSpec.from_cfg(out.negatives))  # validates
            if out.loss == "ce":
                raise ValueError("a neg_sampler feeds a sampled loss: set the loss to bce, bpr or sampled_softmax "
                                 "(ce is the full softmax and uses no negatives)")
        elif out.loss == "bce":
            raise ValueError("loss=bce needs a neg_sampler (for example neg_sampler=rns)")
        if out.monitor not in MONITORS:
            raise ValueError(f"seqrec monitor {out.monitor!r}: choose one of {list(MONITORS)}")
        return out

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the architecture (besides n_items)."""
        common = {"hidden_size": self.hidden_size, "max_len": self.max_len}
        return common | {k: getattr(self, k) for k in ARCH_KEYS[self.arch]}

    def training_key(self) -> dict[str, Any]:
        """Everything that changes the trained weights: the cache key (with the dataset identity)."""
        keys = ("loss", "lr", "weight_decay", "batch_size", "max_epochs", "patience", "monitor", "seed")
        out: dict[str, Any] = {"arch": self.arch, **self.model_kwargs()}
        out |= {k: getattr(self, k) for k in keys}
        if self.loss != "ce" and self.negatives is None:
            out["num_negatives"] = self.num_negatives
        out["val_split"] = self.val_split
        # Added only when set, so existing cache entries keep their keys.
        if self.negatives is not None:
            out["negatives"] = dict(sorted(self.negatives.items()))
        if self.adam_beta2 != 0.999:
            out["adam_beta2"] = self.adam_beta2
        return out


def with_neg_sampler(model_cfg: Any, neg_sampler: Any) -> dict[str, Any]:
    """A sequential model's config with a ``neg_sampler`` group applied: the sampler's keys become
    ``negatives`` and its ``loss`` (bce | bpr | sampled_softmax) replaces the model's loss. ``None``
    leaves the model as configured."""
    from omegaconf import DictConfig, OmegaConf

    def plain(c: Any) -> dict[str, Any]:
        return dict(OmegaConf.to_container(c, resolve=True)) if isinstance(c, DictConfig) else dict(c or {})

    out = plain(model_cfg)
    if not neg_sampler:
        return out
    ns = plain(neg_sampler)
    ns.pop("name", None)
    out["loss"] = ns.pop("loss", "bce")
    out["negatives"] = ns
    return out
