"""SASRec (Kang & McAuley, 2018): a causal self-attention encoder over the item history.

Defaults follow the auxiliary model NAPO uses (LLaRA ships a SASRec with hidden size 64): 2 blocks,
1 head, learned absolute positions over the last ``max_len`` items. Blocks are pre-LayerNorm with a
final LayerNorm, which trains stably from scratch in a few CPU epochs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from napo_lab.models.seqrec.base import SeqRecModel


class SASRec(SeqRecModel):
    """Self-attentive sequential recommender; the user state is the hidden state at the last item."""

    arch = "sasrec"

    def __init__(
        self,
        n_items: int,
        hidden_size: int = 64,
        max_len: int = 10,
        num_layers: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(n_items, hidden_size, max_len)
        self.num_heads = int(num_heads)
        self.pos_emb = nn.Embedding(self.max_len, hidden_size)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=hidden_size,
                nhead=num_heads,
                dim_feedforward=hidden_size,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Unit-scale embeddings after the sqrt(D) multiplication, as in the original implementation.
        std = 1.0 / math.sqrt(self.hidden_size)
        nn.init.normal_(self.item_emb.weight, std=std)
        nn.init.normal_(self.pos_emb.weight, std=std)
        with torch.no_grad():
            self.item_emb.weight[self.pad_id].zero_()

    def attention_mask(self, seq: Tensor) -> Tensor:
        """Bool mask [B*heads, L, L], True = blocked: future positions and padding keys are blocked.
        The diagonal stays open so that padding queries (left of the real items) attend to
        themselves instead of producing NaNs; real positions never see padding."""
        length = seq.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).triu(1)
        blocked = causal.unsqueeze(0) | (seq == self.pad_id).unsqueeze(1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=seq.device)
        return blocked.repeat_interleave(self.num_heads, dim=0)

    def input_embeddings(self, seq: Tensor) -> Tensor:
        """Item embeddings fed to the first block: scaled by sqrt(D) so that they have unit scale per
        dimension (subclasses whose embeddings are already unit-scale override this)."""
        return self.item_emb(seq) * math.sqrt(self.hidden_size)

    def encode(self, seq: Tensor) -> Tensor:
        keep = (seq != self.pad_id).unsqueeze(-1).to(self.item_emb.weight.dtype)
        positions = torch.arange(seq.shape[1], device=seq.device)
        x = self.input_embeddings(seq) + self.pos_emb(positions)
        x = self.emb_dropout(x) * keep
        mask = self.attention_mask(seq)
        for block in self.blocks:
            x = block(x, src_mask=mask) * keep
        return self.final_norm(x)
