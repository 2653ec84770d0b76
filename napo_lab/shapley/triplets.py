"""Triplet Shapley (He & Ma, CIKM 2024): the value of a (user, positive, negative) training triplet is its
Shapley value in the game whose utility is a validation ranking metric (Recall@20 or NDCG@20) of the
model "trained on" a set of triplets.

Retraining a recommender for every prefix of every ordering is out of reach, and the public code
(BokwaiHo/ITIPR, approximation.py) does not retrain either: it scores prefixes with the current
model. napo_lab makes that idea a well-defined set function (this utility is our choice; the paper's
text was not available to check it against, see docs/triplet_shapley.md):

* the model is the current one (embeddings P for users, Q for items; for LightGCN the propagated
  ones); a set S of triplets moves each user u by one scaled BPR gradient step on u's own triplets,
  items held fixed:  p_u(S) = p_u + eta_u * sum_{(u,i,j) in S} sigmoid(-p_u . (q_i - q_j)) (q_i - q_j);
  eta_u is set so that the whole set moves p_u by ``probe_step * |p_u|``;
* U(S) = mean over validation users of metric@K(p_u(S) Q^T; training items removed, the user's
  validation items relevant).

U is a sum of per-user games, and a triplet only enters its own user's game, so the Shapley value of
a triplet is (1 / #validation users) times its Shapley value in its user's game (additivity and null
players). The estimator therefore runs per user, with orderings of that user's triplets only, which
is the same estimator restricted to the coordinates that matter (each user's orderings drawn
independently). Triplets of users without validation items are null players (value 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from napo_lab.config.check import spec
from napo_lab.shapley.tmc import ShapleyEstimate, tmc_shapley


def metric_at_k(scores: Tensor, relevant: Tensor, k: int, metric: str) -> Tensor:
    """Recall@K or NDCG@K of each row of ``scores`` [R, n_items] for one relevant set [r]; excluded
    items carry -inf. Pessimistic ties as in napo_lab.metrics.full_ranking."""
    rel = scores[:, relevant]  # [R, r]
    higher = (scores.unsqueeze(1) > rel.unsqueeze(2)).sum(-1)
    tied = (scores.unsqueeze(1) == rel.unsqueeze(2)).sum(-1) - 1
    rank = 1 + higher + tied  # [R, r]
    inside = rank <= k
    if metric == "recall":
        return inside.double().mean(-1)
    if metric == "ndcg":
        gain = torch.where(inside, 1.0 / torch.log2(rank.double() + 1.0), torch.zeros_like(rank, dtype=torch.double))
        ideal = (1.0 / torch.log2(torch.arange(2, min(k, relevant.numel()) + 2, dtype=torch.double))).sum()
        return gain.sum(-1) / ideal
    raise ValueError(f"unknown utility metric {metric!r}; choose recall or ndcg")


class UserRankingGame:
    """One user's game: U(S) = metric@K of ``base + sum_{t in S} steps[t]`` (scores over all items)."""

    def __init__(self, base: Tensor, steps: Tensor, relevant: Tensor, k: int = 20, metric: str = "recall") -> None:
        self.base, self.steps, self.relevant = base.double(), steps.double(), relevant.long()
        self.k, self.metric = int(k), metric
        self.n_players = int(steps.shape[0])

    def prefix_values(self, order: np.ndarray, start: int, stop: int) -> np.ndarray:
        order_t = torch.as_tensor(np.asarray(order), dtype=torch.long)
        first = self.base + self.steps[order_t[:start]].sum(0)
        rows = [first.unsqueeze(0)]
        if stop - start > 1:
            rows.append(first + self.steps[order_t[start : stop - 1]].cumsum(0))
        return metric_at_k(torch.cat(rows), self.relevant, self.k, self.metric).numpy()


@dataclass
class TripletShapleyConfig:
    """How triplets are valued (the ``sampler.shapley`` block)."""

    n_permutations: int = spec(10, "orderings per user (>= 4 for the control variate)", ge=1)
    tolerance: float = spec(0.01, "truncation tolerance relative to U(all) (code: 0.01); 0 = no truncation", ge=0)
    patience: int = spec(6, "consecutive close prefixes before truncating (code: counter > 5)", ge=1)
    control_variate: Literal["pooled", "per_player", "none"] = spec("pooled", "the learning-curve control "
                                                                              "variate (see tmc.py)")
    cv_bins: int | None = spec(8, "position bins of the learning-curve surrogate (null: every position)", ge=1)
    metric: Literal["recall", "ndcg"] = spec("recall", "the utility's metric")
    k: int = spec(20, "the utility's cutoff (code: Recall@20)", ge=1)
    probe_step: float = spec(0.3, "the whole set of a user's triplets moves it by probe_step * |p_u|", gt=0)
    chunk: int = spec(64, "prefixes evaluated per batch along an ordering", ge=1)
    seed: int = spec(0, "seed of the orderings", ge=0)

    def __post_init__(self) -> None:
        if self.n_permutations < 1 or self.k < 1 or self.probe_step <= 0 or self.tolerance < 0:
            raise ValueError("triplet shapley: need n_permutations >= 1, k >= 1, probe_step > 0, tolerance >= 0")
        if self.metric not in ("recall", "ndcg"):
            raise ValueError(f"triplet shapley metric must be recall or ndcg, got {self.metric!r}")


@dataclass
class TripletValues:
    values: np.ndarray  # [T] Shapley value of each triplet in the global game
    stderr: np.ndarray  # [T]
    u_empty: float  # U(empty set): the current model's validation metric
    u_all: float  # U(all triplets)
    stats: dict = field(default_factory=dict)


def user_games(users: Tensor, items: Tensor, triplets: np.ndarray, train: list[np.ndarray],
               val: list[np.ndarray], cfg: TripletShapleyConfig):
    """Yield (user, triplet indices, UserRankingGame) for every user with validation items and triplets."""
    users, items = users.detach().double().cpu(), items.detach().double().cpu()
    order = np.argsort(triplets[:, 0], kind="stable")
    bounds = np.searchsorted(triplets[order, 0], np.arange(users.shape[0] + 1))
    for u in range(users.shape[0]):
        idx = order[bounds[u] : bounds[u + 1]]
        if not len(val[u]) or not len(idx):
            continue
        p = users[u]
        diff = items[torch.as_tensor(triplets[idx, 1])] - items[torch.as_tensor(triplets[idx, 2])]  # [n, D]
        grads = torch.sigmoid(-(diff @ p)).unsqueeze(1) * diff
        total = grads.sum(0).norm()
        eta = cfg.probe_step * p.norm() / total if total > 0 else torch.zeros((), dtype=torch.double)
        base = items @ p
        base[torch.as_tensor(np.setdiff1d(train[u], val[u]))] = -torch.inf
        yield u, idx, UserRankingGame(base, eta * grads @ items.T, torch.as_tensor(val[u]), cfg.k, cfg.metric)


def triplet_shapley(users: Tensor, items: Tensor, triplets: np.ndarray, train: list[np.ndarray],
                    val: list[np.ndarray], cfg: TripletShapleyConfig | None = None) -> TripletValues:
    """Triplet Shapley values of ``triplets`` [T, 3] (user, positive, negative) under the utility above.

    ``users``/``items``: the model's current representations; ``train``/``val``: per-user item ids."""
    cfg = cfg or TripletShapleyConfig()
    rng = np.random.default_rng(cfg.seed)
    n_eval = sum(1 for v in val if len(v))
    values = np.zeros(len(triplets))
    stderr = np.zeros(len(triplets))
    u_empty = u_all = 0.0
    evaluations, cut, n_games, var_plain, var_cv = 0, 0.0, 0, 0.0, 0.0
    for _, idx, game in user_games(users, items, triplets, train, val, cfg):
        est: ShapleyEstimate = tmc_shapley(game, cfg.n_permutations, rng, cfg.tolerance, cfg.patience,
                                           cfg.control_variate, cfg.chunk, cfg.cv_bins)
        values[idx] = est.values / n_eval
        stderr[idx] = est.stderr / n_eval
        ident = np.arange(game.n_players)
        u_empty += float(game.prefix_values(ident, 0, 1)[0]) / n_eval
        u_all += float(game.prefix_values(ident, game.n_players, game.n_players + 1)[0]) / n_eval
        evaluations += est.evaluations
        cut += est.truncated_share * game.n_players
        n_games += 1
        var_cv += float((est.stderr**2).sum())
        var_plain += float((est.stderr**2).sum()) * est.variance_ratio
    stats = {"users": n_games, "evaluations": evaluations, "truncated_share": cut / max(len(triplets), 1),
             "variance_ratio": var_plain / var_cv if var_cv > 0 else 1.0}
    return TripletValues(values, stderr, u_empty, u_all, stats)
