"""Shapley values: exact enumeration, the efficiency property of the triplet game, unbiasedness of the
Monte Carlo estimator (with and without the control variate), truncation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napo_lab.shapley import (
    SubsetGame,
    TripletShapleyConfig,
    exact_shapley,
    metric_at_k,
    tmc_shapley,
    triplet_shapley,
    user_games,
)


def test_exact_values_of_textbook_games():
    """Additive game: phi = the weights. Majority of 3 (any 2 win): 1/3 each. Glove game with a left
    glove (0) and two right gloves (1, 2), a pair is worth 1: phi = (2/3, 1/6, 1/6)."""
    w = np.array([1.0, -2.0, 3.5])
    assert np.allclose(exact_shapley(SubsetGame(3, lambda m: float((w * m).sum()))), w)
    assert np.allclose(exact_shapley(SubsetGame(3, lambda m: float(m.sum() >= 2))), 1 / 3)
    glove = SubsetGame(3, lambda m: float(m[0] and (m[1] or m[2])))
    assert np.allclose(exact_shapley(glove), [2 / 3, 1 / 6, 1 / 6])


def _tiny_triplet_problem(seed: int = 3):
    """2 users, 8 items, 3-d embeddings; user 0 has 4 triplets, user 1 has 3; validation sets of 2."""
    g = torch.Generator().manual_seed(seed)
    users, items = torch.randn(2, 3, generator=g), torch.randn(8, 3, generator=g)
    triplets = np.array([[0, 0, 5], [0, 1, 6], [0, 0, 7], [0, 1, 4], [1, 2, 6], [1, 3, 7], [1, 2, 5]])
    train = [np.array([0, 1]), np.array([2, 3])]
    val = [np.array([4, 5]), np.array([0, 6])]
    cfg = TripletShapleyConfig(k=2, probe_step=3.0, metric="ndcg", tolerance=0.0)
    return users, items, triplets, train, val, cfg


def _global_game(users, items, triplets, train, val, cfg):
    """The whole triplet game as a set function, built directly from its definition."""
    games = {u: (idx, game) for u, idx, game in user_games(users, items, triplets, train, val, cfg)}

    def utility(mask: np.ndarray) -> float:
        total = 0.0
        for idx, game in games.values():
            scores = game.base + (game.steps * torch.as_tensor(mask[idx], dtype=torch.double)[:, None]).sum(0)
            total += float(metric_at_k(scores[None], game.relevant, game.k, game.metric)[0])
        return total / len(games)

    return SubsetGame(len(triplets), utility), games


def test_efficiency_on_an_exact_tiny_triplet_game():
    """All 7! = 5,040 orderings of the 7 triplets enumerated: the values sum to U(all) - U(empty),
    and equal the per-user exact values divided by the number of validation users (2)."""
    problem = _tiny_triplet_problem()
    game, per_user = _global_game(*problem)
    phi = exact_shapley(game)
    full, empty = np.ones(7, bool), np.zeros(7, bool)
    assert phi.sum() == pytest.approx(game.value(full) - game.value(empty), abs=1e-12)
    assert np.abs(phi).max() > 0.01  # a non-trivial game: the steps change the rankings
    for idx, g in per_user.values():
        assert np.allclose(phi[idx], exact_shapley(g) / 2, atol=1e-12)
    tv = triplet_shapley(*problem[:5], TripletShapleyConfig(**{**problem[5].__dict__, "n_permutations": 2}))
    assert tv.u_all - tv.u_empty == pytest.approx(game.value(full) - game.value(empty), abs=1e-12)


@pytest.mark.parametrize("control_variate", ["none", "pooled", "per_player"])
def test_monte_carlo_is_unbiased_against_the_exact_values(control_variate):
    """400 orderings per user, no truncation: every estimate is within 4 standard errors of the exact
    value (a 99.99% interval), and the estimates of one ordering set still sum to U(all) - U(empty)
    (exactly for pooled/none, within the intervals for per_player)."""
    users, items, triplets, train, val, base_cfg = _tiny_triplet_problem()
    game, _ = _global_game(users, items, triplets, train, val, base_cfg)
    exact = exact_shapley(game)
    cfg = TripletShapleyConfig(**{**base_cfg.__dict__, "n_permutations": 400, "control_variate": control_variate,
                                  "seed": 11})
    est = triplet_shapley(users, items, triplets, train, val, cfg)
    z = np.abs(est.values - exact) / np.maximum(est.stderr, 1e-12)
    assert (np.abs(est.values - exact) <= 4 * est.stderr + 1e-12).all(), z
    if control_variate != "per_player":
        assert est.values.sum() == pytest.approx(exact.sum(), abs=1e-9)


def test_control_variate_reduces_variance_where_position_matters():
    """A game whose utility saturates (U = min(|S|, 3) / 3 over 12 identical players): the marginal
    of a player depends only on its position, which the learning-curve surrogate captures exactly."""
    game = SubsetGame(12, lambda m: min(int(m.sum()), 3) / 3)
    rng = np.random.default_rng(0)
    plain = tmc_shapley(game, 40, rng, control_variate="none")
    cv = tmc_shapley(game, 40, np.random.default_rng(0), control_variate="pooled")
    assert cv.variance_ratio > 10
    assert np.allclose(cv.values, 1 / 12, atol=1e-9) and not np.allclose(plain.values, 1 / 12, atol=1e-3)


def test_truncation_saves_evaluations_and_keeps_efficiency_within_tolerance():
    """U = min(|S|, 5) / 5 over 40 players: every ordering reaches U(all) at the prefix of 5 players;
    prefixes 5, 6, 7 are within tolerance, so with patience 3 the walk stops after prefix 7 and the
    33 players after it get marginal 0 (share 33/40). Each ordering still sums to U(7) - U(0) = 1."""
    game = SubsetGame(40, lambda m: min(int(m.sum()), 5) / 5)
    est = tmc_shapley(game, 10, np.random.default_rng(1), tolerance=0.01, patience=3, control_variate="none",
                      chunk=4)
    assert est.truncated_share == pytest.approx(33 / 40)
    assert est.evaluations <= 2 + 10 * 8  # U(empty), U(all), then at most 2 chunks of 4 per ordering
    assert math.fsum(est.values) == pytest.approx(1.0)


def test_chunking_does_not_change_the_estimate():
    game = SubsetGame(9, lambda m: float(np.sin(np.arange(9) @ m)))
    a = tmc_shapley(game, 6, np.random.default_rng(5), tolerance=0.05, patience=2, chunk=1)
    b = tmc_shapley(game, 6, np.random.default_rng(5), tolerance=0.05, patience=2, chunk=64)
    assert np.allclose(a.values, b.values) and a.truncated_share == b.truncated_share
