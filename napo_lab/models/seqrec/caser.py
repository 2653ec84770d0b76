"""Caser (Tang & Wang, 2018): horizontal and vertical convolutions over the L x D embedding "image"
of the last L items.

Differences from the paper, on purpose: no user embedding (evaluation users are held out of training
in these protocols, so a per-user vector would be untrained) and a single next item as target.
Caser has no per-position states: :meth:`encode` returns the window summary at the last position only,
which is all :class:`SeqRecModel` reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from napo_lab.models.seqrec.base import SeqRecModel


class Caser(SeqRecModel):
    """Convolutional sequence embedding over a fixed window of ``max_len`` items."""

    arch = "caser"

    def __init__(
        self,
        n_items: int,
        hidden_size: int = 64,
        max_len: int = 10,
        n_h: int = 16,
        n_v: int = 4,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(n_items, hidden_size, max_len)
        self.vertical = nn.Conv2d(1, n_v, kernel_size=(self.max_len, 1))
        self.horizontal = nn.ModuleList(
            nn.Conv2d(1, n_h, kernel_size=(h, hidden_size)) for h in range(1, self.max_len + 1)
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_v * hidden_size + n_h * self.max_len, hidden_size)
        nn.init.normal_(self.item_emb.weight, std=hidden_size**-0.5)
        self.item_emb.weight.data[self.pad_id].zero_()

    def encode(self, seq: Tensor) -> Tensor:
        image = self.item_emb(seq).unsqueeze(1)  # [B, 1, L, D]
        vertical = self.vertical(image).flatten(1)  # [B, n_v * D]
        pooled = []
        for conv in self.horizontal:
            h = F.relu(conv(image).squeeze(3))  # [B, n_h, L - height + 1]
            pooled.append(h.max(dim=2).values)
        z = torch.cat([vertical, *pooled], dim=1)
        return F.relu(self.fc(self.dropout(z))).unsqueeze(1)  # [B, 1, D]
