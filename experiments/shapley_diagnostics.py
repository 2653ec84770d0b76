"""Diagnostics of the Triplet Shapley estimator on MovieLens-100K (rating protocol).

Trains BPR-MF with uniform negatives for ``--warmup`` epochs, draws one pool of triplets (one
negative per training pair), and for each probe step walks the same orderings once, then estimates
the values without and with each control-variate variant. Reports, per setting: U(empty), U(all),
the share of zero values, the mean value of noisy vs real training positives, the variance ratio
(sum of plain per-triplet variances / sum after the correction; > 1 = the control variate helps),
and seconds.

    python experiments/shapley_diagnostics.py --out experiments/results/shapley_diagnostics.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napo_lab.data.ratings import load_ratings_split
from napo_lab.models.cf import CFConfig, NegativeSampler, train_cf
from napo_lab.shapley import TripletShapleyConfig, estimate, sample_marginals, user_games

VARIANTS = {"none": ("none", None), "pooled": ("pooled", None), "pooled_bins8": ("pooled", 8),
            "per_player": ("per_player", None), "per_player_bins8": ("per_player", 8)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratings", default="movielens/ml-100k/ml-100k.inter")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--arch", default="bprmf")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--probe-steps", default="0.1,0.3,1.0")
    ap.add_argument("--permutations", type=int, default=10)
    ap.add_argument("--users", type=int, default=0, help="value only the first N users (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="experiments/results/shapley_diagnostics.json")
    args = ap.parse_args()
    import os

    data_dir = Path(args.data_dir or os.environ.get("NAPO_LAB_DATA_DIR", "."))
    torch.set_num_threads(1)
    split = load_ratings_split(data_dir / args.ratings)
    start = time.perf_counter()
    model, info = train_cf(split, CFConfig(arch=args.arch, max_epochs=args.warmup, eval_every=args.warmup,
                                           seed=args.seed), {"name": "uniform"})
    warm_seconds = time.perf_counter() - start
    pairs, noisy = split.train_pairs()
    rng = np.random.default_rng(args.seed)
    pool = np.concatenate([pairs, NegativeSampler(split, rng)(pairs[:, 0])[:, None]], axis=1)
    with torch.no_grad():
        users, items = model.representations()
    rows = []
    for step in (float(s) for s in args.probe_steps.split(",")):
        cfg = TripletShapleyConfig(probe_step=step, n_permutations=args.permutations, seed=args.seed)
        walk_rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        n_eval = sum(1 for v in split.val if len(v))
        var = {k: [0.0, 0.0] for k in VARIANTS}
        values = {k: np.zeros(len(pool)) for k in VARIANTS}
        u_empty = u_all = 0.0
        evaluations = truncated = 0
        for u, idx, game in user_games(users, items, pool, split.train, split.val, cfg):
            if args.users and u >= args.users:
                break
            samples = sample_marginals(game, cfg.n_permutations, walk_rng, cfg.tolerance, cfg.patience, cfg.chunk)
            u_empty += samples.u_empty / n_eval
            u_all += samples.u_all / n_eval
            evaluations += samples.evaluations
            truncated += samples.truncated
            for name, (mode, bins) in VARIANTS.items():
                est = estimate(samples, mode, bins)
                values[name][idx] = est.values / n_eval
                v_cv = float((est.stderr**2).sum())
                var[name][0] += v_cv * est.variance_ratio
                var[name][1] += v_cv
        seconds = time.perf_counter() - t0
        valued = np.zeros(len(pool), bool)
        for u in range(args.users or split.n_users):
            valued[pool[:, 0] == u] = True
        v = values["none"]
        row = {"probe_step": step, "u_empty": u_empty, "u_all": u_all, "evaluations": evaluations,
               "truncated_share": truncated / max(1, cfg.n_permutations * valued.sum()), "seconds": seconds,
               "share_zero": float((v[valued] == 0).mean()), "share_positive": float((v[valued] > 0).mean()),
               "mean_value_noisy": float(v[valued & noisy].mean()), "mean_value_real": float(v[valued & ~noisy].mean()),
               "variance_ratio": {k: (a / b if b > 0 else 1.0) for k, (a, b) in var.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"args": vars(args), "warmup_seconds": warm_seconds, "warm_val": info["best_val"], "pool": len(pool),
           "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
