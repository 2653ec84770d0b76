"""Shared base class for the conventional sequential recommenders (SASRec, GRU4Rec, Caser).

Every model sees the same input: an item-id history, oldest first, padded with -1 anywhere
(right padding from the collate, left padding, or none). The base class *compacts* it into a fixed
window of the last ``max_len`` real items, right-aligned, with the pad id ``n_items`` on the left.
Because every history is mapped to one canonical tensor, user states do not depend on how (or how
much) the caller padded it, and each model can read its last hidden state at position -1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


def compact_history(history: Tensor, max_len: int, pad_id: int) -> Tensor:
    """Map a -1 padded history [B, H] (oldest first) to [B, max_len]: the last ``max_len`` real items,
    right-aligned, left-padded with ``pad_id``. Order among real items is kept."""
    history = history.long()
    valid = history >= 0
    # 1 for the most recent real item, 2 for the one before, ... (0 stays on padding).
    rank_from_end = valid.flip(1).long().cumsum(1).flip(1) * valid
    keep = valid & (rank_from_end <= max_len)
    out = torch.full((history.shape[0], max_len), pad_id, dtype=torch.long, device=history.device)
    rows, cols = keep.nonzero(as_tuple=True)
    out[rows, max_len - rank_from_end[rows, cols]] = history[rows, cols]
    return out


def pad_histories(histories: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Right-pad variable-length id lists with -1 into an int64 array [N, width] (keeps the last
    ``width`` items when a list is longer)."""
    lists = [np.asarray(h, dtype=np.int64) for h in histories]
    width = width if width is not None else max((len(h) for h in lists), default=1)
    out = np.full((len(lists), max(width, 1)), -1, dtype=np.int64)
    for i, h in enumerate(lists):
        h = h[-width:] if len(h) > width else h
        out[i, : len(h)] = h
    return out


class SeqRecModel(nn.Module):
    """A next-item model over a catalogue of ``n_items`` ids (0..n_items-1).

    Subclasses implement :meth:`encode` (compacted [B, max_len] ids -> [B, max_len, D] hidden states,
    causal: position t only sees items up to t). Scores are dot products with the (tied) item
    embedding table, as in SASRec, so ``user_states`` is exactly the vector NAPO compares between users
    and ``scores`` its logits per item.
    """

    arch: str = "base"

    def __init__(self, n_items: int, hidden_size: int, max_len: int) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.hidden_size = int(hidden_size)
        self.max_len = int(max_len)
        self.pad_id = self.n_items
        self.item_emb = nn.Embedding(self.n_items + 1, self.hidden_size, padding_idx=self.pad_id)
        self.config: dict = {}  # filled by the factory: arch + hyper-parameters, saved with the weights
        self.train_info: dict = {}  # filled by training / the cache: best epoch, seconds, from_cache

    def encode(self, seq: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def compact(self, history: Tensor) -> Tensor:
        return compact_history(history.to(self.item_emb.weight.device), self.max_len, self.pad_id)

    def user_states(self, history: Tensor) -> Tensor:
        """[B, H] item ids (-1 padded, oldest first) -> [B, D] hidden state after the last real item."""
        return self.encode(self.compact(history))[:, -1, :]

    def scores(self, history: Tensor) -> Tensor:
        """[B, H] history -> [B, n_items] logits of every catalogue item being the next one."""
        return self.user_states(history) @ self.item_emb.weight[: self.n_items].T

    def candidate_scores(self, history: Tensor, candidates: Tensor) -> Tensor:
        """[B, H] history, [B, C] candidate ids -> [B, C] logits (a gather of :meth:`scores`).

        Padding ids (-1, e.g. masked completions in a preference batch) score exactly 0: they map to
        the all-zero padding embedding, so callers can pass ``batch["item_ids"]`` as is and mask."""
        state = self.user_states(history)
        candidates = candidates.to(state.device).long()
        cand = self.item_emb(torch.where(candidates < 0, self.pad_id, candidates))
        return torch.einsum("bd,bcd->bc", state, cand)

    def forward(self, history: Tensor) -> Tensor:
        return self.scores(history)

    def freeze(self) -> SeqRecModel:
        """Eval mode, no gradients: how NAPO / RosePO use it as an auxiliary scorer."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
