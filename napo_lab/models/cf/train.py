"""BPR training of the non-sequential family (BPR-MF, LightGCN) with a triplet sampler: uniform, or
Triplet Shapley (resampling or loss weighting), evaluated by full ranking with training items removed.

Settings follow ITIPR's code where it has them (main_MF.py, main_Graph.py): 64-d, Adam lr 1e-3 with
weight decay 1e-2 (MF) / 1e-3 (LightGCN), a summed BPR loss, one negative per (user, positive) pair
drawn uniformly from the items outside the user's training set, values recomputed every
``refresh_every`` epochs on a fresh pool of triplets. Where the code has no setting napo_lab chooses:
an epoch is one pass over the training pairs (the code draws pairs with replacement), validation
Recall@20 every ``eval_every`` epochs with early stopping (the code evaluates every 50 of 1,000 epochs
and keeps the last), and a warm-up of uniform epochs before the first valuation (the code values the
triplets of a randomly initialised model).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from napo_lab.config.check import dataclass_from_mapping, spec
from napo_lab.data.ratings import RatingsSplit
from napo_lab.metrics.full_ranking import full_ranking_metrics
from napo_lab.models.cf.models import BPRMF, CFModel, LightGCN
from napo_lab.shapley import TripletShapleyConfig, importance, loss_weights, resample, triplet_shapley

log = logging.getLogger(__name__)

DEFAULT_WEIGHT_DECAY = {"bprmf": 1e-2, "lightgcn": 1e-3}


@dataclass
class CFConfig:
    """A non-sequential model and its BPR training (conf/model/bprmf.yaml, lightgcn.yaml)."""

    kind: Literal["cf"] = spec("cf", "the non-sequential family (rating protocol, full ranking)")
    name: str = spec("bprmf", "the model's name (reports)")
    arch: Literal["bprmf", "lightgcn"] = spec("bprmf", "matrix factorisation or LightGCN")
    dim: int = spec(64, "embedding size (code: 64)", ge=1)
    n_layers: int = spec(1, "LightGCN propagation layers (code: layer_size [64] -> 1)", ge=0)
    adj_norm: Literal["row_self_loop", "symmetric"] = spec("row_self_loop", "LightGCN adjacency: D^-1 (A + I) "
                                                                            "(code) or D^-1/2 A D^-1/2 (paper)")
    lr: float = spec(1e-3, "Adam learning rate (code: 1e-3)", gt=0)
    weight_decay: float | None = spec(None, "Adam weight decay; null = the code's (MF 1e-2, LightGCN 1e-3)", ge=0)
    batch_size: int = spec(1024, "triplets per step (code: 1,024 MF)", ge=1)
    reduction: Literal["sum", "mean"] = spec("sum", "BPR loss over a batch (code: sum)")
    max_epochs: int = spec(300, "epochs at most (an epoch = one pass over the training pairs)", ge=1)
    eval_every: int = spec(5, "epochs between validation evaluations", ge=1)
    patience: int = spec(6, "evaluations without improvement of monitor before stopping", ge=1)
    monitor: Literal["recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20"] = spec(
        "recall@20", "validation metric for early stopping (full ranking)")
    seed: int = spec(0, "seed of initialisation, negatives and orderings", ge=0)
    num_threads: int | None = spec(1, "torch CPU threads while training (null = unchanged)", ge=1)

    def __post_init__(self) -> None:
        if self.arch not in DEFAULT_WEIGHT_DECAY:
            raise ValueError(f"unknown cf arch {self.arch!r}; choose bprmf or lightgcn")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be sum or mean, got {self.reduction!r}")
        if self.weight_decay is None:
            self.weight_decay = DEFAULT_WEIGHT_DECAY[self.arch]


@dataclass
class SamplerConfig:
    """Which (user, positive, negative) triplets BPR trains on (conf/sampler/*.yaml)."""

    name: Literal["uniform", "triplet_shapley"] = spec("uniform", "uniform negatives, or Triplet Shapley")
    use: Literal["resample", "weight"] = spec("resample", "triplet_shapley: resample (the paper's wording) or "
                                                           "weight the loss (the code's)")
    weighting: Literal["clipped", "raw"] = spec("clipped", "weight: mean-1 weights from the clipped values, or the "
                                                           "raw values (the code)")
    clip_quantile: float = spec(0.99, "values are clipped to [0, this quantile]", gt=0, le=1)
    floor: float = spec(0.1, "added to every clipped value, times their mean (zero-valued triplets stay "
                             "drawable)", ge=0)
    warmup_epochs: int = spec(20, "uniform epochs before the first valuation", ge=0)
    refresh_every: int = spec(20, "epochs between valuations (code: sample_every 10)", ge=1)
    pool_negatives: int = spec(1, "negatives per (user, positive) pair in a valued pool", ge=1)
    shapley: TripletShapleyConfig = spec(factory=TripletShapleyConfig, doc="the valuation (napo_lab.shapley)")

    def __post_init__(self) -> None:
        if self.name not in ("uniform", "triplet_shapley"):
            raise ValueError(f"unknown sampler {self.name!r}; choose uniform or triplet_shapley")
        if self.use not in ("resample", "weight"):
            raise ValueError(f"sampler.use must be resample or weight, got {self.use!r}")
        if self.refresh_every < 1 or self.pool_negatives < 1 or self.warmup_epochs < 0:
            raise ValueError("need refresh_every >= 1, pool_negatives >= 1, warmup_epochs >= 0")
        if isinstance(self.shapley, Mapping):
            self.shapley = TripletShapleyConfig(**self.shapley)

    @property
    def label(self) -> str:
        """Row name suffix in reports: '' (uniform), '+ts-resample', '+ts-weight'."""
        return "" if self.name == "uniform" else f"+ts-{self.use}"


def build_cf(cfg: CFConfig, split: RatingsSplit) -> CFModel:
    if cfg.arch == "bprmf":
        return BPRMF(split.n_users, split.n_items, cfg.dim)
    return LightGCN(split.n_users, split.n_items, split.train_pairs()[0], cfg.dim, cfg.n_layers, cfg.adj_norm)


class NegativeSampler:
    """Uniform negatives outside each user's training set (rejection sampling on a dense mask)."""

    def __init__(self, split: RatingsSplit, rng: np.random.Generator) -> None:
        self.rng = rng
        self.n_items = split.n_items
        self.seen = np.zeros((split.n_users, split.n_items), dtype=bool)
        for u, items in enumerate(split.train):
            self.seen[u, items] = True
        if self.seen.all(1).any():
            raise ValueError("a user has every item in training: no negative can be drawn")

    def __call__(self, users: np.ndarray) -> np.ndarray:
        neg = self.rng.integers(0, self.n_items, len(users))
        bad = self.seen[users, neg]
        while bad.any():
            neg[bad] = self.rng.integers(0, self.n_items, int(bad.sum()))
            bad = self.seen[users, neg]
        return neg


def evaluate_cf(model: CFModel, split: RatingsSplit, part: str, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    """Full-ranking Recall/NDCG@K on ``val`` or ``test`` (training items removed)."""
    model.eval()
    scores = model.scores()
    model.train()
    return {k: float(v) for k, v in full_ranking_metrics(scores, getattr(split, part), split.train, ks).items()}


def _value_pool(model: CFModel, split: RatingsSplit, pairs: np.ndarray, noisy: np.ndarray, negs: NegativeSampler,
                sampler: SamplerConfig, shapley_cfg: TripletShapleyConfig) -> tuple[np.ndarray, Any, dict]:
    pool_pairs = np.repeat(pairs, sampler.pool_negatives, axis=0)
    pool = np.concatenate([pool_pairs, negs(pool_pairs[:, 0])[:, None]], axis=1)
    start = time.perf_counter()
    with torch.no_grad():
        users, items = model.representations()
    tv = triplet_shapley(users, items, pool, split.train, split.val, shapley_cfg)
    pool_noisy = np.repeat(noisy, sampler.pool_negatives)
    stats = {**tv.stats, "seconds": time.perf_counter() - start, "u_empty": tv.u_empty, "u_all": tv.u_all,
             "mean_value_noisy": float(tv.values[pool_noisy].mean()) if pool_noisy.any() else float("nan"),
             "mean_value_real": float(tv.values[~pool_noisy].mean()) if (~pool_noisy).any() else float("nan"),
             "share_positive": float((tv.values > 0).mean()), "share_zero": float((tv.values == 0).mean()),
             "sum_values": float(tv.values.sum())}
    return pool, tv.values, stats


def train_cf(split: RatingsSplit, cfg: CFConfig | Any, sampler: SamplerConfig | Any = None) -> tuple[CFModel, dict]:
    """Train with early stopping on validation ``cfg.monitor``; return the best model and an info dict
    (metrics per evaluation, valuation statistics, seconds)."""
    cfg = cfg if isinstance(cfg, CFConfig) else dataclass_from_mapping(CFConfig, cfg, ("_target_", "cache_dir"))
    sampler = sampler if isinstance(sampler, SamplerConfig) else dataclass_from_mapping(
        SamplerConfig, sampler or {}, ("_target_",))
    shapley_cfg = dataclasses.replace(sampler.shapley, seed=sampler.shapley.seed + cfg.seed)
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = build_cf(cfg, split)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        pairs, noisy = split.train_pairs()
        negs = NegativeSampler(split, rng)
        n = len(pairs)
        history: list[dict] = []
        valuations: list[dict] = []
        best = (-np.inf, -1, None, {})
        pool = q = weights = None
        bad_evals = 0
        start = time.perf_counter()
        for epoch in range(cfg.max_epochs):
            shap = sampler.name == "triplet_shapley" and epoch >= sampler.warmup_epochs
            if shap and (epoch - sampler.warmup_epochs) % sampler.refresh_every == 0:
                pool, values, stats = _value_pool(model, split, pairs, noisy, negs, sampler, shapley_cfg)
                q = importance(values, sampler.clip_quantile, sampler.floor)
                weights = loss_weights(values, sampler.weighting, sampler.clip_quantile, sampler.floor)
                valuations.append({"epoch": epoch, **stats})
                log.info("triplet shapley at epoch %d: %s", epoch, valuations[-1])
            if not shap:
                order = rng.permutation(n)
                trip = np.concatenate([pairs[order], negs(pairs[order, 0])[:, None]], axis=1)
                w = None
            elif sampler.use == "resample":
                trip, w = pool[resample(q, n, rng)], None
            else:
                idx = rng.integers(0, len(pool), n)
                trip, w = pool[idx], weights[idx]
            trip_t = torch.as_tensor(trip)
            w_t = torch.as_tensor(w, dtype=torch.float32) if w is not None else None
            total = 0.0
            for s in range(0, n, cfg.batch_size):
                b = trip_t[s : s + cfg.batch_size]
                loss = model.bpr_loss(b[:, 0], b[:, 1], b[:, 2])
                if w_t is not None:
                    loss = loss * w_t[s : s + cfg.batch_size]
                loss = loss.sum() if cfg.reduction == "sum" else loss.mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            if not np.isfinite(total):
                raise FloatingPointError(f"non-finite BPR loss at epoch {epoch}")
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.max_epochs:
                metrics = evaluate_cf(model, split, "val")
                history.append({"epoch": epoch, "loss": total, **{f"val/{k}": v for k, v in metrics.items()}})
                if metrics[cfg.monitor] > best[0]:
                    state = copy.deepcopy({k: v.detach().clone() for k, v in model.state_dict().items()})
                    best, bad_evals = (metrics[cfg.monitor], epoch, state, metrics), 0
                else:
                    bad_evals += 1
                    if bad_evals >= cfg.patience:
                        break
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    info = {"best_epoch": best[1], "epochs_run": epoch + 1, "train_seconds": seconds, "best_val": best[3],
            "history": history, "valuations": valuations, "config": asdict(cfg), "sampler": asdict(sampler)}
    log.info("%s/%s trained in %.1fs, best epoch %d, val %s", cfg.arch, sampler.name, seconds, best[1], best[3])
    return model, info
