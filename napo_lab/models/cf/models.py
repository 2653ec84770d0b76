"""Non-sequential collaborative-filtering backbones for BPR: matrix factorisation and LightGCN.

Both expose ``representations() -> (users [n_users, D], items [n_items, D])``, the vectors whose dot
products are the scores. Initialisation follows ITIPR's code (Xavier-uniform embedding tables, 64-d).

LightGCN (He et al., 2020) propagates the embeddings over the user-item graph of the training pairs
and averages the layer outputs (layer 0 included). Two adjacency normalisations:

* ``row_self_loop`` (ITIPR's code, model/Graph.py with ``--model l``): D^-1 (A + I), one layer;
* ``symmetric`` (the LightGCN paper): D^-1/2 A D^-1/2, usually 3 layers.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


class CFModel(nn.Module):
    arch = "cf"

    def __init__(self, n_users: int, n_items: int, dim: int = 64) -> None:
        super().__init__()
        self.n_users, self.n_items, self.dim = int(n_users), int(n_items), int(dim)
        self.user_emb = nn.Embedding(self.n_users, self.dim)
        self.item_emb = nn.Embedding(self.n_items, self.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def representations(self) -> tuple[Tensor, Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def bpr_loss(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """Per-triplet BPR loss -log sigmoid(s(u, i) - s(u, j)) [B]."""
        u, it = self.representations()
        eu = u[users]
        return -F.logsigmoid((eu * it[pos]).sum(-1) - (eu * it[neg]).sum(-1))

    @torch.no_grad()
    def scores(self, users: Tensor | None = None) -> Tensor:
        """[B, n_items] scores of every item for ``users`` (all users when None)."""
        u, it = self.representations()
        return (u if users is None else u[users]) @ it.T


class BPRMF(CFModel):
    arch = "bprmf"


class _SparseMatmul(torch.autograd.Function):
    """adj @ x with the gradient adj^T @ g from a precomputed CSR transpose (torch's own sparse backward
    is about ten times slower on CPU)."""

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:  # noqa: D102
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor]:  # noqa: D102
        return None, None, ctx.adj_t @ grad


def graph_adjacency(pairs: np.ndarray, n_users: int, n_items: int, norm: str) -> Tensor:
    """Sparse normalised adjacency [(U+I), (U+I)] of the bipartite training graph (users first)."""
    u = torch.as_tensor(pairs[:, 0], dtype=torch.long)
    i = torch.as_tensor(pairs[:, 1], dtype=torch.long) + n_users
    n = n_users + n_items
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    if norm == "row_self_loop":
        loops = torch.arange(n)
        rows, cols = torch.cat([rows, loops]), torch.cat([cols, loops])
        deg = torch.bincount(rows, minlength=n).double()
        vals = 1.0 / deg[rows]
    elif norm == "symmetric":
        deg = torch.bincount(rows, minlength=n).double()
        inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
        vals = inv[rows] * inv[cols]
    else:
        raise ValueError(f"unknown LightGCN normalisation {norm!r}; choose row_self_loop or symmetric")
    with torch.sparse.check_sparse_tensor_invariants(enable=False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals.float(), (n, n)).coalesce().to_sparse_csr()


class LightGCN(CFModel):
    arch = "lightgcn"

    def __init__(self, n_users: int, n_items: int, train_pairs: np.ndarray, dim: int = 64, n_layers: int = 1,
                 norm: str = "row_self_loop") -> None:
        super().__init__(n_users, n_items, dim)
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.n_layers, self.norm = int(n_layers), norm
        adj = graph_adjacency(np.asarray(train_pairs), n_users, n_items, norm)
        self.register_buffer("adj", adj, persistent=False)
        self.register_buffer("adj_t", adj.to_sparse_coo().t().coalesce().to_sparse_csr(), persistent=False)

    def representations(self) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        layers = [x]
        for _ in range(self.n_layers):
            x = _SparseMatmul.apply(self.adj, self.adj_t, x)
            layers.append(x)
        out = torch.stack(layers).mean(0)
        return out[: self.n_users], out[self.n_users :]
