"""The measured tasks. Each takes a loaded Setup and a spec dict and returns a result dict.

train: after an untimed warm-up step on short prompts, one optimisation step on the full batch (its peak
       memory and, as first_*, its time), then ``steps`` more on the same batch (the timed steps, without
       the first full-size step's one-off costs; their median counts), each with the GEMM rate beside it.
eval:  ranking (20 candidates), generation (greedy) and both, each as before issue 17 (two passes, row
       order) and after it (one prompt pass, batched by length), on the same users, interleaved; seconds
       per user and peak RSS.
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
from benchmarks.efficiency import beside
from benchmarks.flops import Arch, Work, batch_work, flops, generation, packed


def run_train(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    sft = spec["loss"] == "sft"
    loss = setup.loss(spec["loss"])
    module = setup.module(loss, spec["layout"], "sft" if sft else "pref")
    opt = make_optimizer(module)
    k, bsz = int(spec["k"]), int(spec["batch"])
    warm = setup.train_batch(k, bsz, truncate_prompt=16, history=sft)
    batch = setup.train_batch(k, bsz, history=sft)
    train_step(module, opt, warm, setup.device, setup.autocast)  # allocator, kernels and optimizer state
    with PeakMemory(setup.device) as mem:  # the first full-size step: its memory (the heap grows to it)
        first_s, first_cpu = train_step(module, opt, batch, setup.device, setup.autocast)
    # The timed steps are the next ones on the same batch (the median counts): the first full-size step
    # also pays one-off costs (oneDNN compiling kernels for the large matrix shapes, the heap's first touch):
    # 0.5-3 CPU s on SmolLM2, 14 s for S-DPO duplicated at batch 8; a job pays them once per run, not per
    # step. Each timed step has the GEMM rate measured right after it (benchmarks.efficiency.beside).
    dtype, steps, rates, faults = compute_dtype(setup.model), [], [], []
    for _ in range(max(1, int(spec.get("steps", 1)))):
        before = minor_faults()
        steps.append(train_step(module, opt, batch, setup.device, setup.autocast))
        faults.append(minor_faults() - before)
        rates.append(beside(setup.device, setup.mode == "quick", dtype))
    seconds = statistics.median(w for w, _ in steps)
    cpu = statistics.median(c for _, c in steps)
    n_tokens = sum(len(p) for p in batch["prompt_ids"])
    work = batch_work(batch, history=sft)
    return {"seconds": seconds, "cpu_s": cpu, "steps_cpu_s": [c for _, c in steps], "steps_faults": faults,
            "first_seconds": first_s, "first_cpu_s": first_cpu, "peak_mb": mem.peak_mb, "growth_mb": mem.growth_mb, "mem_method": mem.method,
            "prompt_tokens": n_tokens, "tokens": work.tokens,
            "flops": flops(Arch.of(setup.model), work, train=True) if spec["layout"] == "shared_prefix" else None,
            "dtype": dtype, "gemm": rates}


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where the C library does not count them). A step that
    still faults in thousands of pages is paying the heap's first touch, not its steady-state cost."""
    try:
        import resource
    except ImportError:  # not a Unix
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def compute_dtype(model) -> str:
    """The dtype most frozen weights (nearly all the matmul work) are in."""
    from collections import Counter

    import torch

    count: Counter = Counter()
    for p in model.parameters():  # by elements: the frozen reference adapter has many small fp32 tensors
        if not p.requires_grad and p.is_floating_point():
            count[p.dtype] += p.numel()
    return str(count.most_common(1)[0][0] if count else torch.float32).replace("torch.", "")


EVAL_VARIANTS = ("ranking", "generation", "both")


def run_eval(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    """Each protocol (ranking, generation, both) the way evaluation ran before issue 17 (``before``:
    ``generate`` and the packed ranking forward, each over the users in row order) and now (``after``:
    one prompt pass per user, users batched by prompt length), on the same users, interleaved; seconds
    per user and the peak RSS of each; plus how far the two agree and how much prompt padding each did."""
    import numpy as np
    import torch

    from napo_lab.eval.generation import generate_answers
    from napo_lab.eval.prompt_pass import answers_and_scores
    from napo_lab.models.scoring import title_logliks

    n_users, repeats, mnt = int(spec["users"]), int(spec["repeats"]), int(spec["max_new_tokens"])
    dm = setup.datamodule(0, batch_size=int(spec["batch"]), test_limit=n_users)
    rows = dm.eval_dataset("test").rows
    loader = dm.eval_dataloader("test")
    n, pad, model, tok, titles = len(rows), setup.tokenizer.pad_token_id, setup.model, setup.tokenizer, dm.builder.title_ids
    results: dict[str, Any] = {}

    def before(protocol: str):
        texts = generate_answers(model, tok, loader, mnt, "generate") if protocol != "ranking" else None
        scores = title_logliks(model, titles, loader, pad, "shared_prefix", "rank")[0] if protocol != "generation" else None
        return texts, scores

    def after(protocol: str):
        out = answers_and_scores(model, tok, titles, dm.eval_batches(rows), n, generate=protocol != "ranking",
                                 rank=protocol != "generation", max_new_tokens=mnt, desc=protocol)
        results["tokens_after"] = out.tokens
        results[("lengths", protocol)] = out.lengths
        return out.texts, out.summed

    def timed(fn, protocol):
        with PeakMemory(setup.device) as mem, Timer(setup.device) as t:
            value = fn(protocol)
        results[(fn.__name__, protocol)] = value
        return t.wall / n, t.cpu / n, mem.peak_mb

    out: dict[str, list[tuple[float, float, float]]] = {f"{p}/{w}": [] for p in EVAL_VARIANTS for w in ("before", "after")}
    gemm: list[dict[str, Any]] = []
    dtype = compute_dtype(model)
    with torch.no_grad(), setup.autocast():  # as the job evaluates (build.autocast)
        for r in range(repeats + 1):  # round 0 warms up (kernels, allocator) and is discarded unless repeats == 0
            order = [(fn, p) for p in EVAL_VARIANTS for fn in (before, after)]
            order = order[r % len(order):] + order[: r % len(order)]
            if r % 2:
                order.reverse()
            for fn, protocol in order:
                value = timed(fn, protocol)
                if r > 0 or repeats == 0:
                    out[f"{protocol}/{fn.__name__}"].append(value)
            if r > 0 or repeats == 0:  # the GEMM rate beside each timed round (benchmarks.efficiency)
                gemm.append(beside(setup.device, setup.mode == "quick", dtype))
    texts_b, scores_b = results[("before", "both")]
    texts_a, scores_a = results[("after", "both")]
    real = sum(len(p) for b in loader for p in b["prompt_ids"])
    padded = sum(len(b["prompt_ids"]) * max(len(p) for p in b["prompt_ids"]) for b in loader)
    agree = {"answers_equal": int(sum(a == b for a, b in zip(texts_a, texts_b))), "users": n,
             "max_abs_score_diff": float(np.abs(scores_a - scores_b).max()),
             "top1_equal": int((scores_a.argmax(1) == scores_b.argmax(1)).sum()),
             "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}
    tokens = {"before": {"prompt": real, "prompt_padded": padded}, "after": results.get("tokens_after", {})}
    return {"users": n, "per_user": out, "agreement": agree, "tokens": tokens,
            "work": eval_work(setup, dm, rows, results[("lengths", "ranking")], results[("lengths", "generation")]),
            "dtype": dtype, "gemm": gemm}


def eval_work(setup: Setup, dm, rows, rank_lengths, gen_lengths) -> dict[str, dict[str, float]]:
    """Useful tokens and FLOPs of ranking and of generation over the evaluated users (padding and the
    decode steps of rows that already finished are not counted)."""
    arch = Arch.of(setup.model)
    rank, gen = Work(), Work()
    for batch in dm.eval_batches(rows):
        for i, prompt, cands in zip(batch["index"], batch["prompt_ids"], batch["candidates"].tolist()):
            titles = [len(dm.builder.title_ids[int(c)]) for c in cands]
            assert sum(titles) == rank_lengths["titles"][i] and len(prompt) == rank_lengths["prompt"][i]
            rank = rank + packed(len(prompt), titles)
            gen = gen + generation(len(prompt), gen_lengths["answer"][i])
    return {name: {"tokens": w.tokens, "pairs": w.pairs, "head": w.head, "flops": flops(arch, w)}
            for name, w in (("ranking", rank), ("generation", gen))}


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
        steps = [train_step(module, opt, b, setup.device, setup.autocast) for b in batches]
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


def run_packing_task(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.packing import run_packing

    return run_packing(setup, spec)


def run_contention(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.contention import run_contention as run

    return run(setup, spec)


TASKS = {"train": run_train, "eval": run_eval, "refcache": run_refcache, "packing": run_packing_task,
         "contention": run_contention}


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")
