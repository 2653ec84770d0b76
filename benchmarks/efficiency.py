"""Efficiency against the machine's own limit (issue 17, item 1): model FLOPs of each measured task
(benchmarks.flops) over its CPU seconds, as a fraction of the matmul rate measured in the same run.

Both sides use this process's CPU seconds (all its threads), so the fraction says how much of the
arithmetic the CPU time it got could have done went into the model, whatever else runs on the machine.

The rate a fraction is judged against is measured beside the task: in the task's own process, with its
threads, right after each timed step or evaluation round (``beside``). On a shared machine the GEMM rate
itself moves by 15% within an hour (185-217 GFLOP/s bf16 per CPU s here), and a neighbour that slows a step
slows the GEMM next to it too; the best rate of the whole run (``best_peak``, printed beside) set against a
step timed at another moment mixed the machine's mood into the code's efficiency.
"""

from __future__ import annotations

import os
from typing import Any

TRAIN_TARGET = 0.5
RANK_TARGET = 0.5
BOUND_TARGET = 1.25


def load() -> str:
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average n/a"


def measure_peak(threads: int | None, quick: bool) -> dict[str, Any]:
    """fp32 and bf16 GEMM rates at the benchmark's thread count."""
    import torch

    from benchmarks.flops import matmul_rate

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        n = 512 if quick else 2048
        return {dt: matmul_rate(dt, n=n) for dt in ("float32", "bfloat16")} | {"load": load()}
    finally:
        torch.set_num_threads(before)


def beside(device: str, quick: bool, dtype: str) -> dict[str, Any]:
    """The GEMM rate right beside a measurement: this process, its threads, the task's compute dtype;
    the best of 3 (what the machine could do at that moment)."""
    import torch

    from benchmarks.flops import matmul_rate

    with torch.autocast(device.split(":")[0], enabled=False):  # an fp32 GEMM stays fp32 inside a task's autocast
        return matmul_rate(dtype, n=512 if quick else 2048, repeats=3, device=device)


def best_peak(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest rate per dtype over the samples (start and end of the run)."""
    out: dict[str, Any] = {}
    for dt in ("float32", "bfloat16"):
        out[dt] = max((s[dt] for s in samples), key=lambda r: r["flops_per_cpu_s"])
    out["load"] = "; ".join(s["load"] for s in samples)
    return out


def _g(x: float) -> str:
    return f"{x / 1e9:.2f} GFLOP"


def targets(
    rows: list[dict[str, Any]], res: dict[str, Any], peak: dict[str, Any], napo_k: int
) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) rows: SFT and S-DPO shared-prefix steps (S-DPO at the preference stage's
    batch, the ``efficiency`` variant; the layout sweep's one-prompt step where that variant did not run),
    ranking, generation, and ranking time against its token-count bound relative to generation."""
    out: list[tuple[str, str, bool | None]] = []

    def frac(flops: float, cpu_s: list[float], dtype: str, rates: list[float]) -> tuple[float, str]:
        """Median CPU s of the timed steps; judged against the median GEMM rate measured beside the task
        (``rates``: one per timed step or evaluation round), or the run's best peak where the task measured
        none (older results)."""
        cpu = sorted(cpu_s)[len(cpu_s) // 2]
        rate = flops / max(cpu, 1e-12)
        best = peak[dtype if dtype in peak else "float32"]["flops_per_cpu_s"]
        if not rates:
            return rate / best, f"{_g(flops)} in {cpu:.2f} CPU s = {rate / 1e9:.2f} GFLOP/s of {best / 1e9:.2f} ({dtype} GEMM)"
        beside_rate = sorted(rates)[len(rates) // 2]
        return rate / beside_rate, (
            f"{_g(flops)} in {cpu:.2f} CPU s = {rate / 1e9:.2f} GFLOP/s of {beside_rate / 1e9:.2f} ({dtype} GEMM "
            f"beside it, median of {len(rates)}; {rate / best:.1%} of the run's best, {best / 1e9:.2f})")

    sft = next((v for v in res["variants"] if v["loss"] == "sft"), None)
    batched = next((v for v in res["variants"] if v["section"] == "efficiency"), None)
    batched_ran = bool(batched and res["samples"].get(batched["name"]))
    for name, label, goal in (
        (sft and sft["name"], "SFT step", TRAIN_TARGET),
        (batched and batched["name"],
         batched and f"S-DPO shared-prefix step (K={batched['k']}, B={batched['batch']})", TRAIN_TARGET),
        # the layout sweep's one-prompt step: the target's row where the batched step did not run
        (f"shared_prefix K={napo_k}", f"S-DPO shared-prefix step (K={napo_k}, one prompt)",
         None if batched_ran else TRAIN_TARGET),
    ):
        s = res["samples"].get(name) if name else None
        if not s or s[0].get("flops") is None:
            continue
        # every timed step of every round, and every GEMM rate measured beside one (as for evaluation below)
        rates = [g["flops_per_cpu_s"] for x in s for g in x.get("gemm") or []]
        f, how = frac(s[0]["flops"], [c for x in s for c in x["steps_cpu_s"]], s[0]["dtype"], rates)
        out.append(
            (
                f"{label}: achieved FLOP/s" + (f" >= {goal:.0%} of the matmul peak" if goal else " (no target)"),
                f"{f:.1%} ({how})",
                None if goal is None else f >= goal,
            )
        )
    ev = res.get("eval") or {}
    work = ev.get("work")
    if not work:
        return out
    per = {p: sorted(x[1] for x in ev["per_user"][f"{p}/after"]) for p in ("ranking", "generation")}
    cpu = {p: v[len(v) // 2] * ev["users"] for p, v in per.items()}
    rates = [g["flops_per_cpu_s"] for g in ev.get("gemm") or []]
    for p, goal in (("ranking", RANK_TARGET), ("generation", None)):
        f, how = frac(work[p]["flops"], [cpu[p]], ev["dtype"], rates)
        out.append(
            (
                f"{p} evaluation: achieved FLOP/s"
                + (f" >= {goal:.0%} of the matmul peak" if goal else " (no target)"),
                f"{f:.1%} ({how})",
                None if goal is None else f >= goal,
            )
        )
    tok_r, tok_g = work["ranking"]["tokens"], work["generation"]["tokens"]
    bound = cpu["generation"] * tok_r / tok_g
    ratio = cpu["ranking"] / bound
    out.append(
        (
            f"ranking time <= {BOUND_TARGET}x its token-count bound relative to generation",
            f"{ratio:.2f}x (ranking {cpu['ranking']:.2f} CPU s for {tok_r} tokens; generation "
            f"{cpu['generation']:.2f} s for {tok_g} tokens -> bound {bound:.2f} s)",
            ratio <= BOUND_TARGET,
        )
    )
    return out


def summary(peak: dict[str, Any]) -> str:
    return (
        "Matmul peak (best n x n GEMM, torch threads {t}): fp32 {f:.2f} GFLOP/s, bf16 {b:.2f} GFLOP/s per CPU "
        "second ({load}). Each efficiency row is judged against the GEMM rate measured beside it, in the "
        "task's process right after each timed step or round (benchmarks/efficiency.py)."
    ).format(
        t=peak["float32"]["threads"],
        f=peak["float32"]["flops_per_cpu_s"] / 1e9,
        b=peak["bfloat16"]["flops_per_cpu_s"] / 1e9,
        load=peak["load"],
    )
