"""The six negative samplers of "Evaluating Performance and Bias of Negative Sampling in Large-Scale
Sequential Recommendation Models" (Prakash, Bermperidis, Chennu; public code apple/ml-negative-sampling),
as pure tensor functions shared by the sequential models and the LLM preference stage: one vocabulary.

=====  =================  ====================================================================
name   paper name         what one training row gets (as the public code's ``sampler.py`` does)
=====  =================  ====================================================================
rns    uniform            ``num_samples`` items uniform over the catalogue, with replacement,
                          rejecting the user's items
pns    popularity         ``num_samples`` items with probability proportional to
                          training frequency ** ``exponent`` (1 in the paper), with replacement,
                          rejecting the user's items; never-trained items are never drawn
bns    in-batch           ``num_samples`` draws *without replacement* from the multiset of the
                          batch's positives (``pool=targets``: one target per row; ``pool=positions``:
                          every item at every position of the batch's rows), minus the user's own
                          items: an item is drawn in proportion to how often it occurs in the batch
mns    mixed              bns plus ``num_uniform`` uniform items (rns rule)
ans    adaptive           the bns pool; per row only the ``top_k`` entries the *current* model scores
                          highest count: the others stay in the BCE loss with their logit set to 0
                          and no gradient (``adaptive_top_k`` in ``util_neg_loss.py``)
amns   adaptive-mixed     the same from the bns + uniform (mns) pool
=====  =================  ====================================================================

The public code's knobs keep their meaning: ``num_samples`` = ``num_neg_samples``, ``num_uniform`` =
``num_mixed_samples``, ``top_k`` = ``num_adaptive_samples``; ``static_after_epochs`` = its
``batch_oversampling_factor`` (after that many epochs of fresh batches, training replays random stored
batches, so rows *and* their negative pools stop changing; adaptive still re-ranks the stored pool).
``scorer`` says who ranks an adaptive pool: ``self`` (the model being trained, as in the public code) or
``seqrec`` (an LLM preference run asking the auxiliary sequential model instead of the policy).

"The user's items" (``exclude``): ``user`` = every item of the user's training sequence (the public
code's ``positive_set``; default), ``row`` = the row's own history and target only.

Deviations, all forced by napo_lab's row layout (one (history -> target) row per position instead of
one user sequence per row) and written down so they are never silent:
* the public code shares one set of negatives across all positions of a user's sequence; here every
  row (position) draws its own;
* when fewer allowed items exist than requested (a tiny batch, a user who owns the whole pool) the
  missing slots are ``-1`` and masked out; the public code would raise.

Randomness comes only from the ``torch.Generator`` passed in, so a draw is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: sampler name -> the public code's ``neg_sampler_type`` (ans = "adaptive" with num_mixed_samples=0).
SAMPLERS: dict[str, str] = {
    "rns": "uniform",
    "pns": "popularity",
    "bns": "in-batch",
    "mns": "mixed",
    "ans": "adaptive-only",
    "amns": "adaptive",
}
#: The paper's abbreviations, for tables and plots.
PAPER_NAMES: dict[str, str] = {k: k.upper() for k in SAMPLERS}
BATCH_SAMPLERS = ("bns", "mns", "ans", "amns")  # draw from the batch's positives
MIXED_SAMPLERS = ("mns", "amns")  # add num_uniform uniform items
ADAPTIVE_SAMPLERS = ("ans", "amns")  # keep the model's top_k of the pool
POOLS = ("targets", "positions")
EXCLUDES = ("user", "row")
#: Who scores an adaptive pool: the model being trained (the public code; for an LLM, the policy's own
#: title log-probs) or, in an LLM preference run, the auxiliary sequential model.
SCORERS = ("self", "seqrec")


@dataclass(frozen=True)
class NegativeSpec:
    """One sampler and its knobs (the ``neg_sampler`` config group; ``loss.negatives`` for the LLM)."""

    sampler: str = "rns"  # rns | pns | bns | mns | ans | amns
    num_samples: int = 50  # rns/pns: draws per row; bns/mns/ans/amns: draws from the batch pool
    num_uniform: int = 0  # mns/amns: extra uniform items per row (0 for the others)
    top_k: int = 0  # ans/amns: pool entries per row that count (0 for the others)
    pool: str = "targets"  # in-batch pool: targets (one per row) | positions (every item of every row)
    exponent: float = 1.0  # pns: probability proportional to frequency ** exponent
    exclude: str = "user"  # user: the user's training items | row: the row's history and target
    static_after_epochs: int | None = None  # replay stored batches after this many epochs (None = never)
    scorer: str = "self"  # ans/amns: who ranks the pool: self (the model being trained) | seqrec (LLM runs)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every invalid setting, each naming its key and the allowed values."""
        out: list[str] = []
        if self.sampler not in SAMPLERS:
            return [f"neg_sampler.sampler={self.sampler!r}: choose one of {sorted(SAMPLERS)}"]
        if int(self.num_samples) < 1:
            out.append(f"neg_sampler.num_samples={self.num_samples}: must be >= 1")
        if self.sampler in MIXED_SAMPLERS and int(self.num_uniform) < 1:
            out.append(f"neg_sampler.num_uniform={self.num_uniform}: {self.sampler} needs >= 1 uniform item")
        if self.sampler not in MIXED_SAMPLERS and int(self.num_uniform) != 0:
            out.append(f"neg_sampler.num_uniform={self.num_uniform}: only mns/amns add uniform items; set 0")
        if self.sampler in ADAPTIVE_SAMPLERS and not 1 <= int(self.top_k) <= self.width:
            out.append(f"neg_sampler.top_k={self.top_k}: {self.sampler} keeps 1..{self.width} "
                       "(num_samples + num_uniform) pool entries")
        if self.sampler not in ADAPTIVE_SAMPLERS and int(self.top_k) != 0:
            out.append(f"neg_sampler.top_k={self.top_k}: only ans/amns select a top-k; set 0")
        if self.pool not in POOLS:
            out.append(f"neg_sampler.pool={self.pool!r}: choose one of {list(POOLS)}")
        if self.exclude not in EXCLUDES:
            out.append(f"neg_sampler.exclude={self.exclude!r}: choose one of {list(EXCLUDES)}")
        if not float(self.exponent) >= 0:
            out.append(f"neg_sampler.exponent={self.exponent}: must be >= 0")
        if self.scorer not in SCORERS:
            out.append(f"neg_sampler.scorer={self.scorer!r}: choose one of {list(SCORERS)}")
        if self.static_after_epochs is not None and int(self.static_after_epochs) < 1:
            out.append(f"neg_sampler.static_after_epochs={self.static_after_epochs}: null or >= 1")
        return out

    @property
    def width(self) -> int:
        """Negatives (pool entries) per row."""
        return int(self.num_samples) + int(self.num_uniform)

    @property
    def kept(self) -> int:
        """Negatives per row that carry a gradient: top_k for ans/amns, every one otherwise."""
        return int(self.top_k) if self.adaptive else self.width

    @property
    def adaptive(self) -> bool:
        return self.sampler in ADAPTIVE_SAMPLERS

    @property
    def uses_batch(self) -> bool:
        return self.sampler in BATCH_SAMPLERS

    @classmethod
    def from_cfg(cls, cfg: Any) -> NegativeSpec:
        """From a mapping / DictConfig (unknown keys are refused, with their names)."""
        if isinstance(cfg, NegativeSpec):
            return cfg
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(cfg, DictConfig):
                cfg = OmegaConf.to_container(cfg, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        cfg = dict(cfg or {})
        cfg.pop("name", None)
        cfg.pop("_target_", None)
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - fields)
        if unknown:
            raise ValueError(f"neg_sampler: unknown keys {unknown}; allowed {sorted(fields)}")
        return cls(**cfg)


# -- the user's items ----------------------------------------------------------------------------

class UserItems:
    """Each user's set of training items (the public code's ``positive_set``), as a CSR table."""

    def __init__(self, users: Sequence[int], item_lists: Sequence[Iterable[int]], n_items: int):
        self.n_items = int(n_items)
        self.index = {int(u): i for i, u in enumerate(users)}
        sets = [np.unique(np.fromiter((int(x) for x in items), dtype=np.int64)) for items in item_lists]
        self.indptr = np.zeros(len(sets) + 1, dtype=np.int64)
        self.indptr[1:] = np.cumsum([len(s) for s in sets])
        self.items = np.concatenate(sets) if sets else np.zeros(0, dtype=np.int64)

    @classmethod
    def from_rows(cls, rows: Any, n_items: int) -> UserItems:
        """From a prepared train split (user, history, target): the union of each user's rows."""
        per_user: dict[int, set[int]] = {}
        for user, history, target in zip(rows["user"], rows["history"], rows["target"]):
            s = per_user.setdefault(int(user), set())
            s.update(int(h) for h in history)
            s.add(int(target))
        users = sorted(per_user)
        return cls(users, [per_user[u] for u in users], n_items)

    def of(self, user: int) -> np.ndarray:
        i = self.index.get(int(user))
        return self.items[self.indptr[i]:self.indptr[i + 1]] if i is not None else np.zeros(0, np.int64)

    def pairs(self, users: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) index pairs of the given users' items (row = position in ``users``); a user
        without training items contributes nothing."""
        idx = np.array([self.index.get(int(u), -1) for u in users], dtype=np.int64)
        known = idx >= 0
        starts = np.where(known, self.indptr[np.maximum(idx, 0)], 0)
        lens = np.where(known, self.indptr[np.maximum(idx, 0) + 1] - starts, 0)
        rows = np.repeat(np.arange(len(idx), dtype=np.int64), lens)
        first = np.repeat(starts - np.cumsum(lens) + lens, lens)
        return rows, self.items[first + np.arange(int(lens.sum()), dtype=np.int64)]

    def frequency(self) -> np.ndarray:
        """Training frequency per item as the public code counts it (``obtain_cohorts``): the number of
        users whose training sequence holds the item (numpy's ``a[idx] += 1`` adds once per user)."""
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)


def banned_mask(users: Tensor, history: Tensor, target: Tensor, n_items: int, exclude: str,
                user_items: UserItems | None = None) -> Tensor:
    """Bool [B, n_items], True = may not be a negative of that row (``exclude`` = user | row).

    The row's own history (-1 padded) and target are always banned; ``user`` adds every training item
    of the row's user."""
    bsz = target.shape[0]
    banned = torch.zeros(bsz, n_items, dtype=torch.bool)
    rows, cols = (history >= 0).nonzero(as_tuple=True)
    banned[rows, history[rows, cols]] = True
    banned[torch.arange(bsz), target] = True
    if exclude == "user":
        if user_items is None:
            raise ValueError("exclude=user needs the users' training items (UserItems)")
        rows_u, cols_u = user_items.pairs(users.tolist())
        banned[torch.from_numpy(rows_u), torch.from_numpy(cols_u)] = True
    return banned


# -- draws ---------------------------------------------------------------------------------------

def weighted_with_replacement(weights: Tensor, banned: Tensor, n: int, gen: torch.Generator,
                              max_rounds: int = 64) -> Tensor:
    """``n`` independent draws per row from ``weights`` [n_items] restricted to unbanned items
    ([B, n] long; -1 for a row with no allowed item).

    Rejection sampling, as the public code does it (draw, redraw while the item is the user's): every
    draw comes from the whole distribution and banned draws are redrawn, which gives exactly the
    renormalised distribution over the allowed items. Rows still rejected after ``max_rounds`` (the user
    owns almost all the mass) are finished by an exact masked draw."""
    w = weights.to(torch.float64)
    bsz = banned.shape[0]
    allowed_mass = (w.unsqueeze(0) * (~banned)).sum(1)
    empty = allowed_mass <= 0
    if bool(empty.all()):
        return torch.full((bsz, n), -1, dtype=torch.long)
    out = torch.multinomial(w, bsz * n, replacement=True, generator=gen).view(bsz, n)
    bad = banned.gather(1, out) & ~empty.unsqueeze(1)
    for _ in range(max_rounds):
        if not bad.any():
            break
        out[bad] = torch.multinomial(w, int(bad.sum()), replacement=True, generator=gen)
        bad = banned.gather(1, out) & ~empty.unsqueeze(1)
    if bad.any():
        rows = bad.any(1).nonzero().flatten()
        masked = w.unsqueeze(0) * (~banned[rows])
        redraw = torch.multinomial(masked, n, replacement=True, generator=gen)
        out[rows] = torch.where(bad[rows], redraw, out[rows])
    return out.masked_fill(empty.unsqueeze(1), -1)


def uniform(banned: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """rns: ``n`` items uniform over the unbanned catalogue, with replacement ([B, n])."""
    return weighted_with_replacement(torch.ones(banned.shape[1]), banned, n, gen)


def popularity(frequency: Tensor, banned: Tensor, n: int, gen: torch.Generator, exponent: float = 1.0) -> Tensor:
    """pns: ``n`` items with P proportional to frequency ** exponent over unbanned items ([B, n]).

    A never-trained item (frequency 0) is never drawn, also with exponent 0 (0 ** 0 is taken as 0)."""
    f = frequency.to(torch.float64)
    w = torch.where(f > 0, f.pow(float(exponent)), torch.zeros_like(f))
    return weighted_with_replacement(w, banned, n, gen)


def batch_pool(history: Tensor, target: Tensor, pool: str) -> Tensor:
    """The in-batch multiset: the batch's targets, or every item at every position (history + target)."""
    if pool == "targets":
        return target.reshape(-1).clone()
    if pool == "positions":
        return torch.cat([history[history >= 0], target.reshape(-1)])
    raise ValueError(f"pool={pool!r}: choose one of {list(POOLS)}")


def in_batch(pool: Tensor, banned: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """bns: per row ``n`` distinct *positions* of ``pool`` drawn uniformly without replacement among
    those whose item the row may use ([B, n]; -1 where fewer than ``n`` are allowed). An item is drawn
    in proportion to its multiplicity, as ``np.random.choice(allowed, n, replace=False)`` does."""
    bsz = banned.shape[0]
    allowed = ~banned[:, pool]  # [B, P]
    keys = torch.rand(bsz, pool.shape[0], generator=gen)
    keys = torch.where(allowed, keys, torch.full_like(keys, -1.0))
    take = min(n, pool.shape[0])
    top, pos = keys.topk(take, dim=1)
    items = torch.where(top >= 0, pool[pos], torch.full_like(pos, -1))
    if take < n:
        items = torch.cat([items, items.new_full((bsz, n - take), -1)], dim=1)
    return items


def adaptive_top_k(scores: Tensor, valid: Tensor, k: int) -> Tensor:
    """Bool [B, W]: the ``k`` highest-scored valid entries of each row (the public code's
    ``adaptive_top_k``; an entry outside it keeps a zero logit and no gradient in the BCE loss)."""
    k = min(int(k), scores.shape[1])
    masked = torch.where(valid, scores.detach(), torch.full_like(scores, float("-inf")))
    idx = masked.topk(k, dim=1).indices
    keep = torch.zeros_like(valid)
    keep.scatter_(1, idx, True)
    return keep & valid


@dataclass
class DrawnNegatives:
    """Negatives of a batch: ``items`` [B, W] (-1 = empty slot) and ``valid`` = ``items >= 0``.

    For ans/amns this is the *pool*: the model picks its ``top_k`` with :func:`adaptive_top_k`."""

    items: Tensor

    @property
    def valid(self) -> Tensor:
        return self.items >= 0


class NegativeDrawer:
    """Draws a batch's negatives under a :class:`NegativeSpec` (rows: users, histories, targets)."""

    def __init__(self, spec: NegativeSpec, n_items: int, frequency: np.ndarray | Tensor | None = None,
                 user_items: UserItems | None = None):
        self.spec, self.n_items, self.user_items = spec, int(n_items), user_items
        if spec.sampler == "pns" and frequency is None:
            raise ValueError("pns needs the items' training frequency")
        self.frequency = torch.as_tensor(np.asarray(frequency), dtype=torch.float64) if frequency is not None else None
        if spec.exclude == "user" and user_items is None:
            raise ValueError("exclude=user needs the users' training items (UserItems)")

    def draw(self, users: Tensor, history: Tensor, target: Tensor, gen: torch.Generator) -> DrawnNegatives:
        s = self.spec
        users, history, target = users.long().cpu(), history.long().cpu(), target.long().cpu()
        banned = banned_mask(users, history, target, self.n_items, s.exclude, self.user_items)
        if s.sampler == "rns":
            return DrawnNegatives(uniform(banned, s.num_samples, gen))
        if s.sampler == "pns":
            return DrawnNegatives(popularity(self.frequency, banned, s.num_samples, gen, s.exponent))
        parts = [in_batch(batch_pool(history, target, s.pool), banned, s.num_samples, gen)]
        if s.num_uniform:
            parts.append(uniform(banned, s.num_uniform, gen))
        return DrawnNegatives(torch.cat(parts, dim=1))


def spec_summary(spec: NegativeSpec) -> Mapping[str, Any]:
    """The spec as a flat dict (cache keys, run info)."""
    return dataclasses.asdict(spec)
