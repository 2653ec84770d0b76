"""Training batches with sampled negatives for a sequential recommender (``neg_sampler`` group).

One iteration of :class:`NegativeBatches` is one epoch: the train rows in a (seed, epoch)-shuffled
order, ``batch_size`` at a time, each batch with its negatives drawn by napo_lab.data.negatives from a
generator seeded by (seed, epoch), so a run is reproducible.

``static_after_epochs = N`` reproduces the public code's batch oversampling (``main.py``: a buffer of
``batch_oversampling_factor x batches per epoch`` batches is filled with fresh batches; once full,
every step replays ``random.choice(buffer)``): the first N epochs store their batches (row indices and
negatives, compactly), every later epoch replays as many batches drawn at random, with replacement,
from that store. Rows and negative pools are then frozen; ans/amns still re-rank the stored pool with
the current model at every step, as the public code does.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import IterableDataset

from napo_lab.data.negatives import NegativeDrawer


class NegativeBatches(IterableDataset):
    """Yields dicts ``history`` [B, H], ``target`` [B], ``user`` [B], ``negatives`` [B, W] (-1 = empty)."""

    def __init__(self, history: np.ndarray, target: np.ndarray, users: np.ndarray, drawer: NegativeDrawer,
                 batch_size: int, seed: int, static_after_epochs: int | None = None):
        self.history = torch.as_tensor(history, dtype=torch.long)
        self.target = torch.as_tensor(target, dtype=torch.long)
        self.users = torch.as_tensor(users, dtype=torch.long)
        self.drawer, self.batch_size, self.seed = drawer, int(batch_size), int(seed)
        self.static_after = None if static_after_epochs is None else int(static_after_epochs)
        self.epoch = 0
        dtype = np.int16 if drawer.n_items < np.iinfo(np.int16).max else np.int32
        self._dtype = dtype
        self._stored: list[tuple[np.ndarray, np.ndarray]] = []  # (row indices, negatives) per batch

    def __len__(self) -> int:
        return math.ceil(len(self.target) / self.batch_size)

    def _batch(self, rows: torch.Tensor, negatives: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"history": self.history[rows], "target": self.target[rows], "user": self.users[rows],
                "negatives": negatives}

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if self.static_after is not None and epoch >= self.static_after and self._stored:
            picks = torch.randint(len(self._stored), (len(self),), generator=gen).tolist()
            for p in picks:
                rows, negs = self._stored[p]
                yield self._batch(torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(negs.astype(np.int64)))
            return
        order = torch.randperm(len(self.target), generator=gen)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            negs = self.drawer.draw(self.users[rows], self.history[rows], self.target[rows], gen).items
            if self.static_after is not None:
                self._stored.append((rows.numpy().astype(np.int32), negs.numpy().astype(self._dtype)))
            yield self._batch(rows, negs)
