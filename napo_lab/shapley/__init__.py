"""Data valuation for training triplets: Shapley values, their Monte Carlo estimation, and their use
in BPR training (Triplet Shapley, He & Ma, CIKM 2024; see docs/triplet_shapley.md)."""

from napo_lab.shapley.games import Game, SubsetGame, exact_shapley
from napo_lab.shapley.importance import importance, loss_weights, resample
from napo_lab.shapley.tmc import MarginalSamples, ShapleyEstimate, estimate, sample_marginals, tmc_shapley
from napo_lab.shapley.triplets import (
    TripletShapleyConfig,
    TripletValues,
    UserRankingGame,
    metric_at_k,
    triplet_shapley,
    user_games,
)

__all__ = [
    "Game",
    "MarginalSamples",
    "ShapleyEstimate",
    "SubsetGame",
    "TripletShapleyConfig",
    "TripletValues",
    "UserRankingGame",
    "estimate",
    "exact_shapley",
    "importance",
    "loss_weights",
    "metric_at_k",
    "resample",
    "sample_marginals",
    "tmc_shapley",
    "triplet_shapley",
    "user_games",
]
