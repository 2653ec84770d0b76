"""Truncated Monte Carlo (TMC) Shapley estimation with a control variate.

Permutation sampling: draw orderings pi uniformly, walk each one, and record every player's marginal
contribution M_i(pi) = U(prefix before i plus i) - U(prefix before i). The mean over orderings is an
unbiased estimate of phi_i, and the marginals of one ordering sum to U(all) - U(empty).

Truncation (Ghorbani & Zou's TMC, as ITIPR's approximation.py uses it): once the prefix utility has
stayed within ``tolerance * |U(all)|`` of U(all) for ``patience`` consecutive prefixes, the rest of
the ordering is not evaluated and its players get marginal 0. This saves utility evaluations at the
price of a small bias (the ignored tail contributions); ``tolerance = 0`` disables it.

Control variate (the surrogate). In a uniform ordering a player's position c is uniform on
{0, ..., n-1}, so for any fixed function s of the position, E[s(c_i(pi))] = mean_c s(c) is known
exactly. We take s(c) = g(c+1) - g(c), the slope of the game's average learning curve g (mean utility
of a prefix of size c), which captures what all players share: early additions move the utility
more than late ones. The corrected marginal M_i(pi) - beta * (s(c_i(pi)) - mean(s)) keeps the mean
and removes the variance due to where i happened to fall. g and beta are fitted on one half of the
orderings and applied to the other half, then the halves swap (cross-fitting), so the estimator stays
unbiased. Because the corrections of one ordering sum to zero, the efficiency property still holds
ordering by ordering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napo_lab.shapley.games import Game


@dataclass
class ShapleyEstimate:
    values: np.ndarray  # [n] estimated Shapley values
    stderr: np.ndarray  # [n] standard error of each estimate over orderings
    n_permutations: int
    evaluations: int  # prefix utilities computed
    truncated_share: float  # share of (ordering, position) pairs cut by truncation
    variance_ratio: float  # sum of plain marginal variances / sum after the control variate (1 = none)


def walk(game: Game, order: np.ndarray, u_empty: float, u_all: float, tolerance: float, patience: int,
         chunk: int) -> tuple[np.ndarray, int, int]:
    """Prefix utilities U(first k players) for k = 0..n (flat after a truncation), the number of
    utilities computed, and the number of positions cut by truncation."""
    n = game.n_players
    curve = np.empty(n + 1)
    curve[0] = u_empty
    k, run, evaluations = 1, 0, 0
    while k <= n:
        stop = min(k + chunk, n + 1)
        vals = game.prefix_values(order, k, stop)
        evaluations += stop - k
        for j, v in enumerate(vals):
            curve[k + j] = v
            if tolerance > 0 and abs(v - u_all) <= tolerance * abs(u_all):
                run += 1
                if run >= patience:
                    curve[k + j + 1 :] = v
                    return curve, evaluations, n - (k + j)
            else:
                run = 0
        k = stop
    return curve, evaluations, 0


_TINY = 1e-12
BETA_MAX = 2.0


def curve_slope(mean_curve: np.ndarray, bins: int | None) -> np.ndarray:
    """s(c) for c = 0..n-1 from the mean prefix curve g(0..n): its differences, or with ``bins`` the
    average slope over equal-width position bins (less noise; mean(s) is still (g(n) - g(0)) / n
    and the slopes of one ordering still sum to g(n) - g(0))."""
    n = len(mean_curve) - 1
    if not bins or bins >= n:
        return np.diff(mean_curve)
    edges = np.unique(np.linspace(0, n, bins + 1).round().astype(int))
    slope = np.empty(n)
    for lo, hi in zip(edges[:-1], edges[1:]):
        slope[lo:hi] = (mean_curve[hi] - mean_curve[lo]) / (hi - lo)
    return slope


def _cross_fitted(marginals: np.ndarray, positions: np.ndarray, curves: np.ndarray, per_player: bool,
                  bins: int | None = None) -> np.ndarray:
    """Corrected marginals [P, n]: the curve slope and beta of one half correct the other half.

    beta (one per game, or one per player) is the regression slope of the marginals on the curve
    slope *estimated without that ordering* (leave one ordering out within the fitting half): it
    measures how well a curve from the other orderings predicts a new one, so a curve that does not
    generalise gets beta near 0 and the correction switches itself off instead of adding noise."""
    p, n = marginals.shape
    out = marginals.copy()
    folds = (np.arange(p) % 2 == 0, np.arange(p) % 2 == 1)
    for fit, apply in (folds, folds[::-1]):
        m_fit, pos_fit, curves_fit = marginals[fit], positions[fit], curves[fit]
        k = m_fit.shape[0]
        total = curves_fit.sum(0)
        x = np.empty_like(m_fit)
        for j in range(k):
            loo = curve_slope((total - curves_fit[j]) / (k - 1), bins)
            x[j] = loo[pos_fit[j]] - loo.mean()
        x -= x.mean(0)
        y = m_fit - m_fit.mean(0)
        if per_player:
            denom = (x * x).sum(0)
            beta = np.divide((x * y).sum(0), denom, out=np.zeros(n), where=denom > _TINY)
        else:
            denom = float((x * x).sum())
            beta = float((x * y).sum()) / denom if denom > _TINY else 0.0
        # beta is fitted on the other half only, so clipping it keeps the estimator unbiased; it stops
        # a near-constant surrogate (tiny denominator) from blowing the variance up.
        beta = np.clip(beta, 0.0, BETA_MAX)
        slope = curve_slope(curves_fit.mean(0), bins)  # s(c), c = 0..n-1, from the whole fitting half
        out[apply] = marginals[apply] - beta * (slope[positions[apply]] - slope.mean())
    return out


@dataclass
class MarginalSamples:
    """The raw walk: marginals [P, n] (by player), positions [P, n] of each player, prefix curves
    [P, n + 1], U(empty), U(all), utilities computed and positions cut by truncation."""

    marginals: np.ndarray
    positions: np.ndarray
    curves: np.ndarray
    u_empty: float
    u_all: float
    evaluations: int
    truncated: int


def sample_marginals(game: Game, n_permutations: int, rng: np.random.Generator, tolerance: float = 0.0,
                     patience: int = 6, chunk: int = 64) -> MarginalSamples:
    """Walk ``n_permutations`` uniform orderings of ``game`` (with truncation, see the module doc)."""
    n = game.n_players
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    identity = np.arange(n)
    u_empty = float(game.prefix_values(identity, 0, 1)[0])
    u_all = float(game.prefix_values(identity, n, n + 1)[0]) if n else u_empty
    marginals = np.zeros((n_permutations, n))
    positions = np.zeros((n_permutations, n), dtype=np.int64)
    curves = np.full((n_permutations, n + 1), u_empty)
    evaluations, truncated = 2, 0
    for p in range(n_permutations if n else 0):
        order = rng.permutation(n)
        positions[p, order] = identity
        curve, used, cut = walk(game, order, u_empty, u_all, tolerance, max(1, patience), max(1, chunk))
        curves[p] = curve
        marginals[p, order] = np.diff(curve)
        evaluations += used
        truncated += cut
    return MarginalSamples(marginals, positions, curves, u_empty, u_all, evaluations, truncated)


def estimate(samples: MarginalSamples, control_variate: bool | str = "pooled", cv_bins: int | None = None
             ) -> ShapleyEstimate:
    """Shapley estimates from walked orderings, with or without the control variate.

    ``control_variate``: ``pooled`` (one beta per game: the corrections of an ordering sum to zero,
    so efficiency holds per ordering), ``per_player`` (one beta per player: a null player stays
    exactly 0, efficiency holds in expectation), or False/``none``. It needs at least 4 orderings
    (2 per half) and is skipped below that. ``cv_bins`` smooths the learning-curve slope over that
    many position bins (None: one slope per position)."""
    if control_variate is True:
        control_variate = "pooled"
    if control_variate in (False, None):
        control_variate = "none"
    if control_variate not in ("pooled", "per_player", "none"):
        raise ValueError(f"control_variate must be pooled, per_player or none, got {control_variate!r}")
    marginals = samples.marginals
    n_perm, n = marginals.shape
    if n == 0:
        return ShapleyEstimate(np.zeros(0), np.zeros(0), n_perm, samples.evaluations, 0.0, 1.0)
    corrected = marginals
    if control_variate != "none" and n_perm >= 4 and n > 1:
        corrected = _cross_fitted(marginals, samples.positions, samples.curves, control_variate == "per_player",
                                  cv_bins)
    ddof = 1 if n_perm > 1 else 0
    var_plain = marginals.var(0, ddof=ddof)
    var_cv = corrected.var(0, ddof=ddof)
    ratio = float(var_plain.sum() / var_cv.sum()) if var_cv.sum() > 0 else 1.0
    return ShapleyEstimate(
        values=corrected.mean(0),
        stderr=np.sqrt(var_cv / n_perm),
        n_permutations=n_perm,
        evaluations=samples.evaluations,
        truncated_share=samples.truncated / (n * n_perm),
        variance_ratio=ratio,
    )


def tmc_shapley(
    game: Game,
    n_permutations: int,
    rng: np.random.Generator,
    tolerance: float = 0.0,
    patience: int = 6,
    control_variate: bool | str = "pooled",
    chunk: int = 64,
    cv_bins: int | None = None,
) -> ShapleyEstimate:
    """Estimate the Shapley values of ``game`` from ``n_permutations`` uniform orderings
    (:func:`sample_marginals` then :func:`estimate`). ``patience = 6`` matches the code's rule
    (truncate when the counter exceeds 5)."""
    samples = sample_marginals(game, n_permutations, rng, tolerance, patience, chunk)
    return estimate(samples, control_variate, cv_bins)
