"""Paired comparisons of two methods over the same evaluation rows, with bootstrap confidence intervals.

Why paired: every method is scored on the same users (same candidates), so the per-user difference
removes the large user-to-user spread that an unpaired comparison of two means carries. Why a
bootstrap over users: per-user metrics (a hit, a reciprocal rank) are far from normal and users are
the unit we sample from; resampling them says how much the mean difference would move on another
draw of users of the same size.

Seeds are pooled, not treated as extra users: for each bootstrap draw the SAME resampled users are
used in every seed, and the statistic is the mean over seeds and users of (method - baseline). The
interval therefore covers user sampling; seed-to-seed training noise enters through the average.
A baseline with one seed (zero-shot evaluation is deterministic) is paired with every seed of the
method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDiff:
    """Mean of (method - baseline) over seeds and users, with a percentile bootstrap interval."""

    diff: float
    low: float
    high: float
    n_users: int
    n_seeds: int
    level: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (a difference outside the user-sampling noise)."""
        return self.low > 0.0 or self.high < 0.0

    def describe(self, digits: int = 3) -> str:
        mark = "*" if self.significant else ""
        return f"{self.diff:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]{mark}"


def _as_seed_matrix(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be [seeds, users] with at least one user, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite per-user values")
    return arr


def paired_bootstrap(method: np.ndarray, baseline: np.ndarray, n_boot: int = 10_000, level: float = 0.95,
                     seed: int = 0) -> PairedDiff:
    """Paired bootstrap of mean(method - baseline) over users, pooled across seeds.

    ``method`` is [S, N] (or [N]): per-user values of S seeds on the same N rows, aligned by row.
    ``baseline`` is [S, N] (seed s paired with seed s) or [1, N] / [N] (paired with every seed).
    The interval is the percentile interval of ``n_boot`` resamples of the N users (with
    replacement), the same resample for every seed.
    """
    a = _as_seed_matrix(method, "method")
    b = _as_seed_matrix(baseline, "baseline")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"method has {a.shape[1]} rows, baseline {b.shape[1]}: pair them on the same rows")
    if b.shape[0] not in (1, a.shape[0]):
        raise ValueError(f"baseline has {b.shape[0]} seeds; give 1 or as many as the method ({a.shape[0]})")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level} must be in (0, 1)")
    per_user = (a - b).mean(axis=0)  # [N]: seeds averaged per user (same users in every seed)
    n = per_user.shape[0]
    rng = np.random.default_rng(seed)
    boot = np.empty(int(n_boot), dtype=np.float64)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, int(n_boot), chunk):
        stop = min(int(n_boot), start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        boot[start:stop] = per_user[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail], method="inverted_cdf")
    return PairedDiff(float(per_user.mean()), float(low), float(high), n, a.shape[0], level)


def mean_interval(values: np.ndarray, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> PairedDiff:
    """Bootstrap interval of one method's mean (a difference against an all-zero baseline)."""
    a = _as_seed_matrix(values, "values")
    return paired_bootstrap(a, np.zeros((1, a.shape[1])), n_boot=n_boot, level=level, seed=seed)
