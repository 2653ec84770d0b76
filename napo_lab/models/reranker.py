"""DPO4Rec's reward model: a knowledge-augmented list re-ranker (DLCM-style), and the frozen text encoder.

``ListReranker`` reads a 10-item list in its initial order. Each position gets [item ID embedding,
mean embedding of the user's history items, adaptor(reasoning vector)]; a bidirectional GRU runs over
the list (DLCM's list context) and a small MLP scores each position. Without reasoning (``text_dim``
0) the third part is absent: the conventional re-ranker. Trained listwise (softmax cross-entropy
against the normalised labels), as DLCM's attention-rank loss.

``mean_pooled`` is the frozen text encoder: the LLM's base weights (LoRA adapters switched off), last
hidden state mean-pooled over the text's tokens. The issue allows it where no small encoder ships in a
PyPI package at hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class ListReranker(nn.Module):
    def __init__(self, n_items: int, dim: int = 16, text_dim: int = 0, adaptor_dim: int = 16, hidden: int = 32):
        super().__init__()
        self.items = nn.Embedding(n_items, dim)
        self.adaptor = nn.Sequential(nn.Linear(text_dim, adaptor_dim), nn.ReLU()) if text_dim else None
        width = 2 * dim + (adaptor_dim if text_dim else 0)
        self.gru = nn.GRU(width, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * hidden + width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, items: torch.Tensor, history: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """items [B, L], history [B, H] (-1 padded), text [B, T] -> scores [B, L]."""
        x = self.items(items)
        valid = (history >= 0).unsqueeze(-1).float()
        hist = (self.items(history.clamp_min(0)) * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        parts = [x, hist.unsqueeze(1).expand_as(x)]
        if self.adaptor is not None:
            if text is None:
                raise ValueError("this re-ranker was built with reasoning features: pass text vectors")
            parts.append(self.adaptor(text).unsqueeze(1).expand(-1, x.shape[1], -1))
        feats = torch.cat(parts, -1)
        ctx, _ = self.gru(feats)
        return self.head(torch.cat([ctx, feats], -1)).squeeze(-1)


def _tensors(items, labels, history, text):
    width = max(len(h) for h in history)
    hist = torch.full((len(history), width), -1, dtype=torch.long)
    for i, h in enumerate(history):
        hist[i, : len(h)] = torch.as_tensor(list(h), dtype=torch.long)
    t = None if text is None else torch.as_tensor(np.asarray(text), dtype=torch.float32)
    return (torch.as_tensor(np.asarray(items), dtype=torch.long), torch.as_tensor(np.asarray(labels), dtype=torch.float32),
            hist, t)


def train_reranker(n_items: int, items: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
                   history: Sequence[Sequence[int]], text: np.ndarray | None, *, epochs: int = 40, lr: float = 1e-2,
                   seed: int = 0, dim: int = 16) -> ListReranker:
    """Fit a re-ranker on training lists (full batch, Adam, listwise softmax loss); seeded."""
    torch.manual_seed(int(seed))
    model = ListReranker(n_items, dim=dim, text_dim=0 if text is None else int(np.asarray(text).shape[1]))
    it, lab, hist, t = _tensors(items, labels, history, text)
    target = lab / lab.sum(1, keepdim=True).clamp_min(1.0)
    has_pos = lab.sum(1) > 0
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(int(epochs)):
        opt.zero_grad()
        logp = torch.log_softmax(model(it, hist, t), -1)
        loss = -(target * logp).sum(1)[has_pos].mean()
        loss.backward()
        opt.step()
    model.eval()
    return model


@torch.no_grad()
def rerank_scores(model: ListReranker, items, history, text: np.ndarray | None) -> np.ndarray:
    it, _, hist, t = _tensors(items, np.zeros(np.asarray(items).shape), history, text)
    return model(it, hist, t).numpy()


@torch.no_grad()
def mean_pooled(llm, tokenizer, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """[len(texts), hidden] mean-pooled last hidden states of the frozen base model (adapters off)."""
    was_training = llm.training
    llm.eval()
    device = next(llm.parameters()).device
    out = []
    try:
        with llm.disable_adapter():
            for start in range(0, len(texts), batch_size):
                enc = [tokenizer(t or " ", add_special_tokens=False).input_ids or [tokenizer.eos_token_id]
                       for t in texts[start:start + batch_size]]
                width = max(len(e) for e in enc)
                ids = torch.full((len(enc), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(enc), width), dtype=torch.long)
                for i, e in enumerate(enc):
                    ids[i, : len(e)] = torch.as_tensor(e)
                    mask[i, : len(e)] = 1
                hidden = llm(input_ids=ids.to(device), attention_mask=mask.to(device),
                             output_hidden_states=True).hidden_states[-1].float()
                m = mask.to(device).unsqueeze(-1).float()
                out.append(((hidden * m).sum(1) / m.sum(1)).cpu().numpy())
    finally:
        llm.train(was_training)
    return np.concatenate(out, 0)
