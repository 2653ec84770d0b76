"""Typed configuration of a sequential recommender, built from conf/model/<arch>.yaml or from the
``seqrec:`` block of a NAPO / RosePO config (same keys).

The cache key is derived from this object, so only keys that change the trained weights enter it
(``device``, ``num_threads``, ``kind`` and ``name`` do not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from napo_lab.config.check import dataclass_from_mapping, spec

#: Hyper-parameters each architecture actually reads; the others are ignored and kept out of its cache key.
ARCH_KEYS: dict[str, tuple[str, ...]] = {
    "sasrec": ("num_layers", "num_heads", "dropout"),
    "gru4rec": ("num_layers", "dropout"),
    "caser": ("n_h", "n_v", "dropout"),
}
#: Keys accepted for compatibility with the Hydra model group but irrelevant to the weights.
NON_TRAINING_KEYS = ("_target_",)
#: Early-stopping metrics: sampled over the val rows' candidates, or full-catalogue (``full/``).
MONITORS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr", "full/hr@10", "full/ndcg@10")
LOSSES = ("ce", "bpr", "sampled_softmax", "bce")


@dataclass
class SeqRecConfig:
    """A sequential recommender and how it is trained (conf/model/<arch>.yaml; a NAPO run's ``seqrec``)."""

    kind: Literal["seqrec"] = spec("seqrec", "llm or seqrec")
    name: str = spec("sasrec", "the model's name (reports)")
    arch: Literal["sasrec", "gru4rec", "caser"] = spec("sasrec", "architecture")
    hidden_size: int = spec(64, "item embedding = user state size (LLaRA's SASRec uses 64)", ge=1)
    max_len: int = spec(10, "history window; the protocol shows at most 10 items", ge=1)
    num_layers: int = spec(2, "SASRec blocks / GRU layers", ge=1)
    num_heads: int = spec(1, "SASRec attention heads", ge=1)
    dropout: float = spec(0.2, "dropout", ge=0, lt=1)
    n_h: int = spec(16, "Caser: horizontal filters per height", ge=1)
    n_v: int = spec(4, "Caser: vertical filters", ge=1)
    loss: Literal["ce", "bpr", "sampled_softmax", "bce"] = spec(
        "ce", "ce (full softmax) | bpr | sampled_softmax | bce (the last three take a neg_sampler's negatives)")
    num_negatives: int = spec(1, "uniform negatives per row for bpr / sampled_softmax without a neg_sampler", ge=1)
    negatives: dict[str, Any] | None = spec(None, "a neg_sampler (napo_lab.data.negatives.NegativeSpec keys); "
                                                  "set by the neg_sampler group, null = none")
    adam_beta2: float = spec(0.999, "Adam beta2 (the negative-sampling study's public code uses 0.98)", gt=0, lt=1)
    lr: float = spec(0.002, "AdamW learning rate", gt=0)
    weight_decay: float = spec(0.0, "AdamW weight decay", ge=0)
    batch_size: int = spec(256, "rows per step", ge=1)
    max_epochs: int = spec(20, "epochs at most", ge=1)
    patience: int = spec(3, "epochs without improvement of `monitor` on the val candidates", ge=1)
    monitor: Literal["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr", "full/hr@10", "full/ndcg@10"] = spec(
        "ndcg@10", "early-stopping metric: sampled (napo_lab.metrics.ranking) or full-catalogue (full/...)")
    val_split: str | None = spec(None, "split for early stopping; null = the manifest's default_val_split")
    seed: int = spec(42, "seed of the training run", ge=0)
    device: Literal["cpu", "cuda", "auto"] = spec("cpu", "training device (the returned model is on CPU)")
    num_threads: int | None = spec(1, "torch CPU threads while training (null = unchanged); 1 avoids "
                                      "oversubscription in parallel sweeps", ge=1)
    cache_dir: str | None = spec(None, "null = paths.cache_dir")

    @classmethod
    def from_cfg(cls, cfg: Any) -> SeqRecConfig:
        """Build from a dict / DictConfig / SeqRecConfig; unknown keys are logged and ignored, a null
        value keeps the field's default (``val_split: null`` is kept: it means "no validation split")."""
        if isinstance(cfg, SeqRecConfig):
            return dataclasses.replace(cfg)
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        if isinstance(cfg, Mapping):
            cfg = {k: v for k, v in cfg.items() if v is not None or k == "val_split"}
        return dataclass_from_mapping(cls, cfg, ignored=NON_TRAINING_KEYS)

    def __post_init__(self) -> None:
        """Checks that span fields (the config group builds this class directly, by ``_target_``)."""
        if self.arch not in ARCH_KEYS:
            raise ValueError(f"unknown seqrec arch {self.arch!r}; choose one of {sorted(ARCH_KEYS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown seqrec loss {self.loss!r}; choose one of {list(LOSSES)}")
        if self.monitor not in MONITORS:
            raise ValueError(f"seqrec monitor {self.monitor!r}: choose one of {list(MONITORS)}")
        if self.negatives is not None:
            from napo_lab.data.negatives import NegativeSpec

            self.negatives = dataclasses.asdict(NegativeSpec.from_cfg(self.negatives))  # validates
            if self.loss == "ce":
                raise ValueError("a neg_sampler feeds a sampled loss: set the loss to bce, bpr or sampled_softmax "
                                 "(ce is the full softmax and uses no negatives)")
        elif self.loss == "bce":
            raise ValueError("loss=bce needs a neg_sampler (for example neg_sampler=rns)")

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
