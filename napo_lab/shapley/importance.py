"""From triplet values to training: resampling (the paper's wording) or loss weights (the code's).

Both use one importance distribution over the pool of valued triplets. A value is clipped to
[0, its ``clip_quantile`` quantile] (negative values are triplets that hurt the validation ranking;
the upper clip stops a few large values from taking over), then a floor of ``floor`` times the mean
clipped value is added so that a triplet with value 0 (a null player, or one cut by truncation) can
still be drawn:

    q_t ∝ clip(phi_t) + floor * mean(clip(phi))

``resample``: each epoch draws its triplets from q with replacement. ``weight``: each epoch draws
triplets uniformly and multiplies each BPR term by w_t = q_t / mean(q) (mean 1, so the loss keeps
the scale of uniform BPR). Both give the same expected gradient, E_q[grad] = E_uniform[w grad]; they
differ in variance and in which triplets an epoch actually visits. ``raw`` weights are the values as
they are (the public code multiplies the loss by them, negative values included).
If no value is positive, q falls back to uniform.
"""

from __future__ import annotations

import numpy as np


def importance(values: np.ndarray, clip_quantile: float = 0.99, floor: float = 0.1) -> np.ndarray:
    """The distribution q over the pool ([T], sums to 1)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return values
    if not 0 < clip_quantile <= 1 or floor < 0:
        raise ValueError(f"need 0 < clip_quantile <= 1 and floor >= 0, got {clip_quantile}, {floor}")
    positive = values[values > 0]
    if not len(positive):
        return np.full(len(values), 1.0 / len(values))
    upper = np.quantile(values, clip_quantile)
    clipped = np.clip(values, 0.0, max(upper, positive.min()))
    q = clipped + floor * clipped.mean()
    return q / q.sum()


def loss_weights(values: np.ndarray, mode: str = "clipped", clip_quantile: float = 0.99,
                 floor: float = 0.1) -> np.ndarray:
    """Per-triplet BPR weights: ``clipped`` = q / mean(q) (mean 1); ``raw`` = the values themselves."""
    if mode == "raw":
        return np.asarray(values, dtype=np.float64).copy()
    if mode == "clipped":
        q = importance(values, clip_quantile, floor)
        return q * len(q)
    raise ValueError(f"unknown weighting {mode!r}; choose clipped or raw")


def resample(q: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``size`` triplets drawn from q with replacement."""
    return rng.choice(len(q), size=size, replace=True, p=q)
