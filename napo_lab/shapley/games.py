"""Cooperative games over training data and their exact Shapley values (for small games).

A game has ``n_players`` and a utility U over subsets. Shapley's value of player i is its marginal
contribution U(P ∪ {i}) - U(P), averaged over all n! orderings, P being the players before i:

    phi_i = 1/n! * sum over orderings pi of [U(P_i(pi) ∪ {i}) - U(P_i(pi))].

It satisfies efficiency: sum_i phi_i = U(all) - U(empty). Games here expose their utility on the
prefixes of an ordering, which is how Monte Carlo estimators walk them (see tmc.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Protocol

import numpy as np


class Game(Protocol):
    n_players: int

    def prefix_values(self, order: np.ndarray, start: int, stop: int) -> np.ndarray:
        """U(first k players of ``order``) for k = start .. stop - 1 (0 <= start < stop <= n + 1)."""


class SubsetGame:
    """A game from a set function ``utility(mask: bool[n]) -> float``; values are memoised by subset."""

    def __init__(self, n_players: int, utility: Callable[[np.ndarray], float]) -> None:
        self.n_players = int(n_players)
        self._utility = utility
        self._memo: dict[bytes, float] = {}
        self.evaluations = 0

    def value(self, mask: np.ndarray) -> float:
        key = np.packbits(mask.astype(bool)).tobytes()
        if key not in self._memo:
            self._memo[key] = float(self._utility(mask.astype(bool)))
            self.evaluations += 1
        return self._memo[key]

    def prefix_values(self, order: np.ndarray, start: int, stop: int) -> np.ndarray:
        out = np.empty(stop - start)
        mask = np.zeros(self.n_players, dtype=bool)
        mask[order[:start]] = True
        for k in range(start, stop):
            if k > start:
                mask[order[k - 1]] = True
            out[k - start] = self.value(mask)
        return out


def exact_shapley(game: Game, max_players: int = 9) -> np.ndarray:
    """Exact Shapley values by enumerating all n! orderings (n <= ``max_players``)."""
    n = game.n_players
    if n > max_players:
        raise ValueError(f"{n} players: {math.factorial(n)} orderings are too many to enumerate")
    total = np.zeros(n)
    for order in itertools.permutations(range(n)):
        order = np.asarray(order)
        u = game.prefix_values(order, 0, n + 1)
        total[order] += np.diff(u)
    return total / math.factorial(n)
