"""Hard-negative providers: rank the wrong answers of a training example with another model.

``self_hard`` (RosePO): the SFT model's own preferred wrong candidates, from scoring every in-prompt
candidate's title under the fixed template (one shared-prefix forward per example, computed once
before the preference stage). ``seqrec_hard``: the sequential model's top-scored items outside the
history. Both return, per training example, item ids best-first; the sampler skips the target and
history items and takes the first K.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from napo_lab.data.datamodule import _history_tensor, collate_eval
from napo_lab.data.samplers import NegativeProvider as Provider
from napo_lab.models.scoring import title_logliks

log = logging.getLogger(__name__)

class _TrainAsEval(Dataset):
    """Training rows shown with the evaluation template and their in-prompt candidates."""

    def __init__(self, train_dataset):
        self.ds = train_dataset

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        row = self.ds.rows.iloc[i]
        history, cands = [int(h) for h in row["history"]], self.ds.candidates(i)
        text = self.ds.builder.text(history, cands, 0)
        return {"prompt_ids": self.ds.builder.ids(text), "prompt_text": text, "candidates": cands,
                "target": int(row["target"]), "history": history, "user": int(row["user"]), "example_index": i}


def self_hard_factory(model, pad_id: int, layout: str, batch_size: int = 8) -> Callable[..., Provider]:
    """Factory for the data module: ranks every training example's candidates with ``model`` as it is now."""

    def build(dm) -> Provider:
        data = _TrainAsEval(dm.train_dataset)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False,
                            collate_fn=functools.partial(collate_eval, max_history=dm.max_history))
        scores, _ = title_logliks(model, dm.builder.title_ids, loader, pad_id, layout, "self-hard negatives")
        cands = np.asarray([data.ds.candidates(i) for i in range(len(data))], dtype=np.int64)
        order = np.argsort(-scores, axis=1, kind="stable")
        ranked = np.take_along_axis(cands, order, axis=1)
        log.info("self-hard negatives: ranked %d training examples with the SFT model", len(ranked))
        return lambda example: ranked[int(example)].tolist()

    return build


def seqrec_hard_factory(seqrec, top: int = 50, batch_size: int = 256) -> Callable[..., Provider]:
    """Factory: the sequential model's top-``top`` items per training example (history excluded later)."""

    def build(dm) -> Provider:
        rows = dm.train_dataset.rows
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                t = _history_tensor([list(h) for h in rows["history"].iloc[start:start + batch_size]], dm.max_history)
                out.append(torch.topk(seqrec.scores(t), k=min(top, dm.prepared.n_items), dim=1).indices)
        ranked = torch.cat(out).numpy()
        return lambda example: ranked[int(example)].tolist()

    return build
