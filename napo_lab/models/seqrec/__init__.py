"""Conventional sequential recommenders (SASRec, GRU4Rec, Caser): baselines in the paper tables and
the auxiliary scorer NAPO / RosePO consult (user states, per-item logits).

    model = load_or_train_seqrec(prepared, cfg.model, cache_dir)   # frozen, on CPU
    model.user_states(history)   # [B, D]; history [B, H] item ids, -1 padded, oldest first
    model.scores(history)        # [B, n_items] logits
"""

from napo_lab.models.seqrec.base import SeqRecModel, compact_history, pad_histories
from napo_lab.models.seqrec.cache import load_or_train_seqrec
from napo_lab.models.seqrec.caser import Caser
from napo_lab.models.seqrec.config import SeqRecConfig
from napo_lab.models.seqrec.factory import ARCHS, build_seqrec
from napo_lab.models.seqrec.gru4rec import GRU4Rec
from napo_lab.models.seqrec.sasrec import SASRec
from napo_lab.models.seqrec.train import candidate_logits, evaluate_split, split_arrays, train_seqrec

__all__ = [
    "ARCHS",
    "Caser",
    "GRU4Rec",
    "SASRec",
    "SeqRecConfig",
    "SeqRecModel",
    "build_seqrec",
    "compact_history",
    "evaluate_split",
    "load_or_train_seqrec",
    "pad_histories",
    "candidate_logits",
    "split_arrays",
    "train_seqrec",
]
