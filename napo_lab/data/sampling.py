"""Frozen candidate lists for evaluation rows (20 = target + 19 items outside the history).

Two samplers, both pure functions of their arguments (no global random state is touched):

* ``sdpo_candidates`` reproduces S-DPO's sampler exactly (CPython ``random`` seeded with the target
  id), which is what makes our LastFM val/test lists equal S-DPO's published JSON record for record.
  It uses a private ``random.Random`` instance: same sequence as the module-level functions.
* ``seeded_candidates`` is used for every other dataset: a numpy PCG64 stream seeded from
  ``(seed, user, target, len(history))`` so a row's list does not depend on row order or on which
  other rows exist.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

SDPO_RULE = (
    "S-DPO sampler: canset = ids not in history and != target (id order); random.seed(target); "
    "cands = random.sample(canset, n-1) + [target]; random.seed(target); random.shuffle(cands)"
)
SEEDED_RULE = (
    "seeded sampler: rng = numpy PCG64(SeedSequence([seed, user, target, len(history)])); "
    "canset = ids not in history and != target (id order); cands = canset[rng.choice(len(canset), "
    "n-1, replace=False)] + [target]; cands = cands[rng.permutation(n)]"
)


def _canset(history: Sequence[int], target: int, n_items: int) -> list[int]:
    excluded = set(int(h) for h in history)
    excluded.add(int(target))
    return [i for i in range(n_items) if i not in excluded]


def sdpo_candidates(history: Sequence[int], target: int, n_items: int, n_candidates: int = 20) -> list[int]:
    """S-DPO's candidate list for one row (exact reproduction, see module docstring)."""
    canset = _canset(history, target, n_items)
    rng = random.Random(int(target))
    cands = rng.sample(canset, n_candidates - 1) + [int(target)]
    rng.seed(int(target))
    rng.shuffle(cands)
    return cands


def seeded_candidates(
    history: Sequence[int], target: int, n_items: int, n_candidates: int, seed: int, user: int
) -> list[int]:
    """Seeded candidate list for one row (see ``SEEDED_RULE``)."""
    canset = np.asarray(_canset(history, target, n_items), dtype=np.int64)
    if len(canset) < n_candidates - 1:
        from napo_lab.data.prepared import DataError

        raise DataError(f"user {user}: only {len(canset)} items lie outside the history and target, but "
                        f"dataset.n_candidates={n_candidates} needs {n_candidates - 1}. Lower dataset.n_candidates "
                        "or use a larger catalogue (synthetic: dataset.n_clusters x dataset.cluster_size).")
    key = [int(seed), int(user), int(target), len(history)]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))
    picks = canset[rng.choice(len(canset), n_candidates - 1, replace=False)]
    cands = np.concatenate([picks, [int(target)]])
    return [int(c) for c in cands[rng.permutation(n_candidates)]]
