"""BPR-MF and LightGCN: adjacency, negatives, and a tiny training run with each sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from napo_lab.data.ratings import RatingsProtocol, split_ratings
from napo_lab.models.cf import LightGCN, NegativeSampler, evaluate_cf, graph_adjacency, train_cf


def test_adjacency_normalisations():
    """Users 0, 1; items 0, 1 (nodes 2, 3); pairs (0,0), (0,1), (1,1). row_self_loop: D^-1 (A + I), rows
    sum to 1 (user 0: itself and 2 items -> 1/3 each). symmetric: 1/sqrt(d_u d_i): (0,0) -> 1/sqrt(2*1)."""
    pairs = np.array([[0, 0], [0, 1], [1, 1]])
    row = graph_adjacency(pairs, 2, 2, "row_self_loop").to_dense()
    assert torch.allclose(row.sum(1), torch.ones(4))
    assert torch.allclose(row[0], torch.tensor([1 / 3, 0, 1 / 3, 1 / 3]))
    sym = graph_adjacency(pairs, 2, 2, "symmetric").to_dense()
    assert sym[0, 2].item() == pytest.approx(1 / np.sqrt(2)) and torch.allclose(sym, sym.T)
    assert sym.diagonal().abs().sum() == 0


def test_lightgcn_gradient_matches_dense_propagation():
    pairs = np.array([[0, 0], [0, 2], [1, 1], [2, 2], [2, 0]])
    for norm in ("row_self_loop", "symmetric"):
        torch.manual_seed(0)
        model = LightGCN(3, 3, pairs, dim=4, n_layers=2, norm=norm)
        loss = model.bpr_loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([1, 2])).sum()
        loss.backward()
        grad = model.user_emb.weight.grad.clone()
        dense = model.adj.to_dense()
        x = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().requires_grad_()
        out = (x + dense @ x + dense @ (dense @ x)) / 3
        u, it = out[:3], out[3:]
        ref = -torch.nn.functional.logsigmoid((u[[0, 1]] * it[[0, 1]]).sum(-1) - (u[[0, 1]] * it[[1, 2]]).sum(-1))
        ref.sum().backward()
        assert torch.allclose(grad, x.grad[:3], atol=1e-6), norm


def _toy_split():
    """60 users, 40 items: user u likes (rating 5) items near u % 40, and rates far items 2 (noisy)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        liked = {(u + d) % 40 for d in range(8)}
        for i in liked:
            rows.append((u, i, 5))
        for i in rng.choice([i for i in range(40) if i not in liked], 4, replace=False):
            rows.append((u, int(i), 2))
    return split_ratings(pd.DataFrame(rows, columns=["user", "item", "rating"]),
                         RatingsProtocol(item_filter=1, user_filter=1, min_real=5))


def test_negatives_avoid_training_items():
    split = _toy_split()
    sampler = NegativeSampler(split, np.random.default_rng(0))
    users = np.repeat(np.arange(split.n_users), 50)
    neg = sampler(users)
    for u, j in zip(users, neg):
        assert j not in set(split.train[u].tolist())


@pytest.mark.parametrize("arch", ["bprmf", "lightgcn"])
@pytest.mark.parametrize("sampler", [{"name": "uniform"}, {"name": "triplet_shapley", "use": "resample"},
                                     {"name": "triplet_shapley", "use": "weight"}])
def test_tiny_training_run(arch, sampler):
    split = _toy_split()
    cfg = {"arch": arch, "dim": 8, "lr": 0.05, "batch_size": 128, "max_epochs": 12, "eval_every": 2,
           "patience": 10, "seed": 0, "weight_decay": 0.0}
    sampler = {**sampler, "warmup_epochs": 4, "refresh_every": 4, "shapley": {"n_permutations": 4, "k": 5, "tolerance": 0.0}}
    model, info = train_cf(split, cfg, sampler)
    test = evaluate_cf(model, split, "test", ks=(10,))
    assert test["recall@10"] > 10 / 40 + 0.1  # above a random ranking of the ~32 unseen items
    if sampler["name"] == "triplet_shapley":
        assert len(info["valuations"]) == 2 and info["valuations"][0]["epoch"] == 4
        v = info["valuations"][0]
        assert v["sum_values"] == pytest.approx(v["u_all"] - v["u_empty"], abs=1e-6)
    again, _ = train_cf(split, cfg, sampler)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
