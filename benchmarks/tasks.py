"""The measured tasks. Each takes a loaded Setup and a spec dict and returns a result dict.

train: one optimisation step (after an untimed warm-up step on short prompts), timed, with the peak
       memory of that step.
eval:  ranking (20 candidates, shared-prefix) and generation (greedy) of the same users, interleaved
       A B B A ..., seconds per user.
refcache: S-DPO (with its reference) preference epochs over the same examples without the reference
       cache, with a cold cache (computes and stores), and with a warm one (as a later epoch over the
       same pairs, a later run or another sweep job sees it), interleaved.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import PeakMemory, Setup, Timer, make_optimizer, train_step


def run_train(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    loss = setup.loss(spec["loss"])
    module = setup.module(loss, spec["layout"])
    opt = make_optimizer(module)
    k, bsz = int(spec["k"]), int(spec["batch"])
    warm = setup.train_batch(k, bsz, truncate_prompt=16)
    batch = setup.train_batch(k, bsz)
    train_step(module, opt, warm, setup.device)  # allocator, kernels and optimizer state
    with PeakMemory(setup.device) as mem:
        seconds, cpu = train_step(module, opt, batch, setup.device)
    n_tokens = sum(len(p) for p in batch["prompt_ids"])
    return {"seconds": seconds, "cpu_s": cpu, "peak_mb": mem.peak_mb, "growth_mb": mem.growth_mb, "mem_method": mem.method,
            "prompt_tokens": n_tokens}


def run_eval(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from napo_lab.eval.generation import generate_answers
    from napo_lab.models.scoring import title_logliks

    n_users, repeats = int(spec["users"]), int(spec["repeats"])
    dm = setup.datamodule(0, batch_size=int(spec["batch"]), test_limit=n_users)
    loader = dm.eval_dataloader("test")
    n = len(loader.dataset)
    pad = setup.tokenizer.pad_token_id
    model = setup.model

    def rank() -> tuple[float, float]:
        with Timer(setup.device) as t:
            title_logliks(model, dm.builder.title_ids, loader, pad, "shared_prefix", "rank")
        return t.wall / n, t.cpu / n

    def generate() -> tuple[float, float]:
        with Timer(setup.device) as t:
            generate_answers(model, setup.tokenizer, loader, int(spec["max_new_tokens"]), "generate")
        return t.wall / n, t.cpu / n

    with torch.no_grad():
        # warm-up on one batch worth of users is folded into the first (discarded) pair
        out: dict[str, list[tuple[float, float]]] = {"ranking": [], "generation": []}
        for r in range(repeats + 1):
            order = [("ranking", rank), ("generation", generate)]
            if r % 2:
                order.reverse()
            for name, fn in order:
                value = fn()
                if r > 0 or repeats == 0:
                    out[name].append(value)
    return {"users": n, "per_user": out}


def run_refcache(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    from napo_lab.models.ref_cache import RefLogpCache, cache_key
    from napo_lab.recipe.keys import reference_key_parts

    cfg = setup.cfg
    loss = setup.loss("sdpo_ref")
    module = setup.module(loss, "shared_prefix")
    opt = make_optimizer(module)
    dm = setup.datamodule(int(spec["k"]), batch_size=int(spec["batch"]), train_limit=int(spec["examples"]))
    batches = list(dm.train_dataloader())
    parts = reference_key_parts(cfg, setup.sft_path, setup.prepared)
    root = Path(tempfile.mkdtemp(prefix="napo_bench_refcache"))

    def epoch(cache) -> tuple[float, float]:
        module.ref_cache = cache
        steps = [train_step(module, opt, b, setup.device) for b in batches]
        return sum(w for w, _ in steps), sum(c for _, c in steps)

    warm_cache = RefLogpCache(root, cache_key(parts), describe=parts)
    times: dict[str, list[tuple[float, float]]] = {"no cache": [], "cold cache (first epoch, fills it)": [], "warm cache": []}
    times["cold cache (first epoch, fills it)"].append(epoch(warm_cache))
    for r in range(int(spec["repeats"])):
        order = [("no cache", None), ("warm cache", warm_cache)]
        if r % 2:
            order.reverse()
        for name, cache in order:
            times[name].append(epoch(cache))
    n_ex = sum(len(b["prompt_ids"]) for b in batches)
    return {"examples": n_ex, "steps": len(batches), "epoch_s": times, "hits": warm_cache.hits,
            "misses": warm_cache.misses, "entries": len(warm_cache)}


TASKS = {"train": run_train, "eval": run_eval, "refcache": run_refcache}


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")
