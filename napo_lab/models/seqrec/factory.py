"""Build a sequential recommender from its configuration."""

from __future__ import annotations

from typing import Any

from napo_lab.models.seqrec.base import SeqRecModel
from napo_lab.models.seqrec.caser import Caser
from napo_lab.models.seqrec.config import SeqRecConfig
from napo_lab.models.seqrec.gru4rec import GRU4Rec
from napo_lab.models.seqrec.sasrec import SASRec

ARCHS: dict[str, type[SeqRecModel]] = {"sasrec": SASRec, "gru4rec": GRU4Rec, "caser": Caser}


def build_seqrec(cfg: SeqRecConfig | Any, n_items: int) -> SeqRecModel:
    """A freshly initialised model (seed the RNG first for reproducible weights)."""
    cfg = SeqRecConfig.from_cfg(cfg)
    model = ARCHS[cfg.arch](n_items, **cfg.model_kwargs())
    model.config = {"n_items": int(n_items), **cfg.training_key()}
    return model
