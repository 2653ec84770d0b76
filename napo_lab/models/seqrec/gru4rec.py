"""GRU4Rec (Hidasi et al., 2016) in its common next-item form: item embeddings -> GRU -> projection.

The GRU reads the compacted window (padding first, real items last), so its last output has seen
every real item; padding embeddings are zero and the window length is fixed, so the state is a
deterministic function of the real items only.
"""

from __future__ import annotations

from torch import Tensor, nn

from napo_lab.models.seqrec.base import SeqRecModel


class GRU4Rec(SeqRecModel):
    """Recurrent sequential recommender; scores are tied to the item embeddings like SASRec's."""

    arch = "gru4rec"

    def __init__(
        self,
        n_items: int,
        hidden_size: int = 64,
        max_len: int = 10,
        num_layers: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(n_items, hidden_size, max_len)
        self.emb_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            hidden_size,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.proj = nn.Linear(hidden_size, hidden_size)
        nn.init.normal_(self.item_emb.weight, std=hidden_size**-0.5)
        self.item_emb.weight.data[self.pad_id].zero_()

    def encode(self, seq: Tensor) -> Tensor:
        out, _ = self.gru(self.emb_dropout(self.item_emb(seq)))
        return self.proj(out)
