"""Negative samplers for preference training and the epoch-aware index sampler.

Every random draw here comes from ``numpy.random.default_rng([seed, epoch, example])``: the result
depends only on those three numbers, never on worker count, worker id or the order examples are
visited, so batches are identical with 0 or N data workers and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol, get_args

import numpy as np
import torch
from torch.utils.data import Sampler

from napo_lab.config import schema

STRATEGIES: tuple[str, ...] = get_args(schema.STRATEGY)  # in_prompt, catalogue, ..., mixed (the last)
# Strategies whose negatives come from another component (a model), set on the data module.
PROVIDED = ("seqrec_hard", "self_hard")


def example_rng(seed: int, epoch: int, example: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(example)])


class NegativeProvider(Protocol):
    """Ranks hard negatives for a training example (e.g. a sequential model or the SFT model)."""

    def __call__(self, example: int) -> Sequence[int]: ...


def strategy_parts(strategy: str, weights: Mapping[str, float] | None = None) -> list[str]:
    """The strategies a negatives config draws from: itself, or for ``mixed`` every non-zero weight."""
    if strategy != "mixed":
        return [strategy]
    return sorted(k for k, v in (weights or {}).items() if v)


class NegativeSampler:
    """Draws K negatives for one training example under a named strategy.

    in_prompt (alias random): uniform from the prompt's other candidates (S-DPO).  catalogue: uniform from items
    outside the history.  popularity: train-count weighted outside the history.  hallucinated:
    items outside the prompt's candidate list (answers the model was not offered; RosePO's
    semantic-hallucination negatives, approximated with real catalogue titles).  seqrec_hard /
    self_hard: the top-ranked wrong items of a provider.  recpo_rating / recpo_random: RecPO's
    negative selection on its future-candidate rows (``rated`` flags each candidate): the rated future
    items only / the random fill only, uniform without replacement (RecPO's ``both`` is ``in_prompt``).
    Where that pool is empty, the other candidates are the pool (the public code does this for
    ``rating``; for ``random`` it would fail); where it holds fewer than K, all of it is taken and
    the missing negatives are masked.  mixed: each slot picks a strategy by weight.
    """

    def __init__(self, strategy: str, num_negatives: int, n_items: int, train_counts: np.ndarray,
                 weights: Mapping[str, float] | None = None, seed: int = 0):
        if strategy not in STRATEGIES:
            raise ValueError(f"negatives.strategy={strategy!r} is unknown; use one of {STRATEGIES}")
        self.strategy, self.k, self.n_items, self.seed = strategy, int(num_negatives), int(n_items), seed
        counts = np.asarray(train_counts, dtype=np.float64) + 1.0
        self.pop_p = counts / counts.sum()
        self.providers: dict[str, Callable[[int], Sequence[int]]] = {}
        self.weights: dict[str, float] = {}
        if strategy == "mixed":
            w = {k: float(weights[k]) for k in strategy_parts(strategy, weights)}
            bad = sorted(set(w) - set(STRATEGIES[:-1]) - {"random"})
            if bad or not w or min(w.values()) < 0:
                raise ValueError(f"negatives.weights={dict(weights or {})} must map strategies "
                                 f"{list(STRATEGIES[:-1]) + ['random']} to non-negative weights")
            total = sum(w.values())
            self.weights = {k: v / total for k, v in sorted(w.items())}

    def needs_provider(self) -> list[str]:
        return [n for n in strategy_parts(self.strategy, self.weights) if n in PROVIDED and n not in self.providers]

    def set_provider(self, name: str, provider: Callable[[int], Sequence[int]]) -> None:
        self.providers[name] = provider

    def sample(self, example: int, epoch: int, history: Sequence[int], target: int,
               candidates: Sequence[int], rated: Sequence[bool] | None = None) -> list[int]:
        if self.k == 0:
            return []
        rng = example_rng(self.seed, epoch, example)
        banned = set(int(h) for h in history) | {int(target)}
        if self.strategy != "mixed":
            return self._draw(self.strategy, self.k, rng, example, banned, candidates, rated)
        names = list(self.weights)
        picks = rng.choice(len(names), size=self.k, p=list(self.weights.values()))
        out: list[int] = []
        for j in range(len(names)):
            n = int((picks == j).sum())
            if n:
                out += self._draw(names[j], n, rng, example, banned | set(out), candidates, rated)
        return out

    def _draw(self, name: str, n: int, rng: np.random.Generator, example: int, banned: set[int],
              candidates: Sequence[int], rated: Sequence[bool] | None = None) -> list[int]:
        if name in ("recpo_rating", "recpo_random"):
            if rated is None:
                raise ValueError(f"negatives strategy {name!r} needs RecPO's candidate rows "
                                 "(dataset=movielens_recpo or lastfm_recpo)")
            want = name == "recpo_rating"
            pool = [int(c) for c, r in zip(candidates, rated) if bool(r) == want and int(c) not in banned]
            if not pool:
                pool = [int(c) for c in candidates if int(c) not in banned]
            return [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
        if name in ("in_prompt", "random"):
            pool = [int(c) for c in candidates if int(c) not in banned]
            return [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
        if name in ("catalogue", "popularity", "hallucinated"):
            blocked = banned | (set(int(c) for c in candidates) if name == "hallucinated" else set())
            p = self.pop_p if name == "popularity" else None
            return _draw_outside(rng, n, self.n_items, blocked, p)
        provider = self.providers.get(name)
        if provider is None:
            raise RuntimeError(f"negatives strategy {name!r} needs a provider (set_provider) before training")
        ranked = [int(i) for i in provider(example) if int(i) not in banned]
        return ranked[:n]


def _draw_outside(rng: np.random.Generator, n: int, n_items: int, blocked: set[int],
                  p: np.ndarray | None) -> list[int]:
    """n distinct item ids outside ``blocked``, uniform or with probabilities p (renormalised)."""
    allowed = np.setdiff1d(np.arange(n_items), np.fromiter(blocked, dtype=np.int64, count=len(blocked)))
    if len(allowed) == 0:
        return []
    probs = None if p is None else p[allowed] / p[allowed].sum()
    return [int(i) for i in rng.choice(allowed, size=min(n, len(allowed)), replace=False, p=probs)]


class EpochIndexSampler(Sampler):
    """Yields (epoch, index) pairs in a (seed, epoch)-seeded order.

    Carrying the epoch inside the index keeps the dataset stateless: worker processes never need
    to be told the epoch. Lightning calls ``set_epoch`` before each epoch's iterator is created.
    ``resume_at(epoch, consumed)`` makes that epoch's next iteration skip the examples a run had
    already consumed before it was interrupted, so a resumed run sees exactly the batches an
    uninterrupted one would.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, consumed: int) -> None:
        self._resume = (int(epoch), int(consumed))

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start, self._resume = self._resume[1], None
        rank, world = _shard()
        order = self.order(self.epoch)
        order = (order + order[: -len(order) % world])[start:]  # pad: every rank gets as many batches
        # Under DDP rank r takes rows r, r + W, ...: local batch s of the W ranks together is exactly the
        # single-process batch s of size W x batch_size (the trainer runs with use_distributed_sampler=False).
        return iter([(self.epoch, i) for i in order[rank::world]])

    def __len__(self) -> int:
        return -(-self.n // _shard()[1])


def _shard() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
