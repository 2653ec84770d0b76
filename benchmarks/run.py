"""`python -m benchmarks.run` (`make bench`): speed and memory of the log-prob layouts, NAPO's exact
sharing, ranking vs generation evaluation and the reference cache, side by side in one run.

    python -m benchmarks.run            # SmolLM2-135M on LastFM prompts, CPU (< 15 min on 2 cores)
    python -m benchmarks.run --quick    # tiny random model on synthetic data, in-process (seconds)
    python -m benchmarks.run --device cuda --model-config 1b   # random ~1B Llama, bf16, SDPA (untested)

Training variants run one step per fresh subprocess (its peak memory is its own), in rounds that
interleave the variants (the order rotates each round); a round is repeated while the time budget
allows, and every number is the median over rounds. Writes bench.csv, bench.md and bench.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.tasks import median

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny random model, synthetic data, in-process")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--model-config", default="smollm2", choices=["smollm2", "1b"],
                    help="smollm2: the embedded SmolLM2-135M; 1b: a random-initialised ~1B Llama (bf16, SDPA)")
    ap.add_argument("--ks", default="1,3,7,15", help="negatives per prompt for the layout sweep")
    ap.add_argument("--batch", type=int, default=1, help="prompts per step in the layout sweep")
    ap.add_argument("--napo-batch", type=int, default=8,
                    help="prompts per NAPO step (the issue's setting: 8); with the KV-cache layout (prefix_cache) "
                         "batch 8 ran out of memory on a 23 GB machine, the packed shared_prefix layout does not")
    ap.add_argument("--napo-k", type=int, default=3)
    ap.add_argument("--sft-batch", type=int, default=4, help="prompts per SFT step (the SFT stage's batch_size)")
    ap.add_argument("--pref-batch", type=int, default=4,
                    help="prompts per S-DPO step of the efficiency section (the preference stage's batch_size)")
    ap.add_argument("--eval-users", type=int, default=16)
    ap.add_argument("--eval-batch", type=int, default=4, help="users per evaluation batch")
    ap.add_argument("--eval-repeats", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--ref-examples", type=int, default=2)
    ap.add_argument("--ref-batch", type=int, default=2)
    ap.add_argument("--ref-k", type=int, default=3)
    ap.add_argument("--ref-repeats", type=int, default=1)
    ap.add_argument("--pack-batch", type=int, default=4, help="SFT packing: prompts per SFT step (sft.batch_size)")
    ap.add_argument("--pack-batches", type=int, default=4, help="SFT packing: batches timed")
    ap.add_argument("--pack-tokens", type=int, default=4096, help="SFT packing: the packed row budget")
    ap.add_argument("--timed-steps", type=int, default=None,
                    help="training steps timed per variant and round, after the untimed first full-size step; "
                         "the median counts (one step alone moved by 10-15%% on a shared machine). "
                         "Default 3 (--quick: 1)")
    ap.add_argument("--min-rounds", type=int, default=1)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=780.0,
                    help="start another round of training variants only while the run stays within this")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a CPU shared with other jobs a second thread mostly "
                         "spin-waits; 0 = torch's default)")
    ap.add_argument("--contention-batch", type=int, default=4, help="prompts per SFT step in the contention test")
    ap.add_argument("--contention-rounds", type=int, default=2,
                    help="rounds of (step alone, step beside a busy loop) per thread setting; 0 skips the test")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="peak memory of the (shrunk) default job and a zero-shot ranking evaluation under three malloc "
                         "settings, each a fresh `python -m napo_lab...` process (minutes)")
    ap.add_argument("--worker-timeout", type=float, default=3600.0,
                    help="seconds a worker subprocess may take (a shared, busy CPU stretches wall time)")
    ap.add_argument("--inprocess", action="store_true", help="no subprocesses (memory then shares a process)")
    ap.add_argument("--cache-dir", default=os.environ.get("NAPO_LAB_CACHE_DIR")
                    or str(Path.home() / ".cache" / "napo_lab"))
    ap.add_argument("--out", default=None, help="output directory (default benchmarks/results[/quick])")
    args = ap.parse_args(argv)
    if args.quick:
        args.inprocess = True
        args.max_rounds = min(args.max_rounds, 2)
        args.min_rounds = args.max_rounds
        args.eval_users, args.eval_batch, args.max_new_tokens = 6, 2, 8
        args.pack_batches = 2
        args.contention_rounds = 0  # one fresh process per thread setting: not quick
        args.memory = False  # six real command-line runs: not quick
    if args.timed_steps is None:
        args.timed_steps = 1 if args.quick else 3
    if args.out is None:
        args.out = str(ROOT / "benchmarks" / "results" / ("quick" if args.quick else ""))
    return args


def mode_of(args) -> str:
    return "quick" if args.quick else ("1b" if args.model_config == "1b" else "full")


# ---------------------------------------------------------------------------------------------
# Running tasks
# ---------------------------------------------------------------------------------------------
class Runner:
    def __init__(self, args):
        self.args, self.mode = args, mode_of(args)
        self.setup = None

    def base(self) -> dict[str, Any]:
        return {"mode": self.mode, "device": self.args.device, "cache_dir": self.args.cache_dir,
                "threads": self.args.threads}

    def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = {**self.base(), **spec}
        if self.args.inprocess:
            from benchmarks.common import Setup
            from benchmarks.tasks import TASKS

            if self.setup is None:
                self.setup = Setup(self.mode, self.args.device, self.args.cache_dir, self.args.threads).load()
            return TASKS[spec["task"]](self.setup, spec)
        from benchmarks.worker import PREFIX

        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(spec)], cwd=str(ROOT),
                                  capture_output=True, text=True, timeout=self.args.worker_timeout,
                                  env={**os.environ, "NAPO_BENCH_WORKER": "1"})
        except subprocess.TimeoutExpired:
            why = f"no result within --worker-timeout {self.args.worker_timeout:.0f} s"
            print(f"  FAILED {spec.get('name', spec['task'])}: {why}", flush=True)
            return {"failed": why}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(PREFIX)]
        if proc.returncode or not lines:
            why = ("killed by the system (out of memory?)" if proc.returncode in (-9, 137)
                   else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
            print(f"  FAILED {spec.get('name', spec['task'])}: {why}", flush=True)
            return {"failed": why}
        return json.loads(lines[-1][len(PREFIX):])


def train_variants(args) -> list[dict[str, Any]]:
    out = []
    for k in [int(x) for x in args.ks.split(",")]:
        for layout in ("shared_prefix", "prefix_cache", "duplicate"):
            out.append({"task": "train", "section": "layout", "name": f"{layout} K={k}", "layout": layout,
                        "k": k, "batch": args.batch, "loss": "sdpo"})
    out.append({"task": "train", "section": "sft", "name": f"SFT step (shared_prefix, history loss) B={args.sft_batch}",
                "layout": "shared_prefix", "k": 0, "batch": args.sft_batch, "loss": "sft"})
    out.append({"task": "train", "section": "efficiency",
                "name": f"S-DPO step (shared_prefix) K={args.napo_k} B={args.pref_batch}",
                "layout": "shared_prefix", "k": args.napo_k, "batch": args.pref_batch, "loss": "sdpo"})
    out.append({"task": "train", "section": "napo", "name": f"NAPO share=exact (shared_prefix) B={args.napo_batch}",
                "layout": "shared_prefix", "k": args.napo_k, "batch": args.napo_batch, "loss": "napo"})
    out.append({"task": "train", "section": "napo", "name": f"S-DPO duplicate B={args.napo_batch}",
                "layout": "duplicate", "k": args.napo_k, "batch": args.napo_batch, "loss": "sdpo"})
    return [v | {"steps": args.timed_steps} for v in out]


def run_all(args) -> dict[str, Any]:
    runner = Runner(args)
    variants = train_variants(args)
    samples: dict[str, list[dict[str, Any]]] = {v["name"]: [] for v in variants}
    failed: dict[str, str] = {}
    start = time.perf_counter()
    rounds, round_s = 0, 0.0
    eval_res = ref_res = pack_res = None
    while rounds < args.max_rounds:
        elapsed = time.perf_counter() - start
        if rounds >= args.min_rounds and elapsed + round_s > args.budget_s:
            break
        t0 = time.perf_counter()
        todo = [v for v in variants if v["name"] not in failed]
        order = todo[rounds % len(todo):] + todo[: rounds % len(todo)]
        if rounds % 2:
            order = order[::-1]
        for v in order:
            res = runner(v)
            if "failed" in res:
                failed[v["name"]] = res["failed"]
                continue
            samples[v["name"]].append(res)
            steps = res["steps_cpu_s"]
            print(f"  round {rounds + 1}: {v['name']:<45} {res['seconds']:8.2f} s wall {res['cpu_s']:8.2f} s CPU"
                  f" (median of {len(steps)}: {', '.join(f'{c:.2f}' for c in steps)}; first step {res['first_cpu_s']:.2f};"
                  f" page faults {', '.join(f'{n / 1000:.0f}k' for n in res['steps_faults'])})"
                  f"  peak {res['peak_mb']:8.0f} MB"
                  f"  (+{res['growth_mb']:.0f} MB)", flush=True)
        round_s = time.perf_counter() - t0
        rounds += 1
        if eval_res is None:
            eval_res = runner({"task": "eval", "users": args.eval_users, "batch": args.eval_batch,
                               "repeats": args.eval_repeats, "max_new_tokens": args.max_new_tokens})
            if "failed" not in eval_res:
                print("  eval (wall, CPU s/user; peak MB): " + ", ".join(
                    f"{k} {median([x[0] for x in v]):.3f}, {median([x[1] for x in v]):.3f}; "
                    f"{median([x[2] for x in v]):.0f}" for k, v in eval_res["per_user"].items()), flush=True)
            ref_res = runner({"task": "refcache", "examples": args.ref_examples, "batch": args.ref_batch,
                              "k": args.ref_k, "repeats": args.ref_repeats})
            if "failed" in ref_res:
                ref_res = None
            else:
                print("  reference cache (wall, CPU s/epoch): " + ", ".join(
                    f"{k} {median([w for w, _ in v]):.2f}, {median([c for _, c in v]):.2f}"
                    for k, v in ref_res["epoch_s"].items()), flush=True)
            pack_res = runner({"task": "packing", "batch": args.pack_batch, "batches": args.pack_batches,
                               "pack_tokens": args.pack_tokens})
            if "failed" not in pack_res:
                print("  SFT packing (CPU s/step, padding): " + ", ".join(
                    f"{k} {v['cpu_s_per_step']:.2f}, {100 * v['padding']:.1f}%"
                    for k, v in pack_res["variants"].items()), flush=True)
    return {"variants": variants, "samples": samples, "failed": failed, "rounds": rounds, "eval": eval_res, "refcache": ref_res,
            "packing": pack_res, "wall_s": time.perf_counter() - start}


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------
def _stats(wall: list[float], cpu: list[float]) -> dict[str, Any]:
    return {"repeats": len(wall), "median_s": median(wall), "min_s": min(wall), "max_s": max(wall),
            "median_cpu_s": median(cpu), "min_cpu_s": min(cpu), "max_cpu_s": max(cpu)}


def rows_of(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for v in res["variants"]:
        s = res["samples"][v["name"]]
        if not s:
            rows.append({"section": v["section"], "variant": v["name"], "layout": v["layout"], "loss": v["loss"],
                         "k": v["k"], "batch": v["batch"], "repeats": 0, "median_s": None, "min_s": None,
                         "max_s": None, "median_cpu_s": None, "min_cpu_s": None, "max_cpu_s": None,
                         "unit": "FAILED: " + res["failed"].get(v["name"], "?"), "peak_mb": "", "growth_mb": "",
                         "mem_method": ""})
            continue
        rows.append({"section": v["section"], "variant": v["name"], "layout": v["layout"], "loss": v["loss"],
                     "k": v["k"], "batch": v["batch"], **_stats([x["seconds"] for x in s], [x["cpu_s"] for x in s]),
                     "unit": "s/step", "peak_mb": median([x["peak_mb"] for x in s]),
                     "growth_mb": median([x["growth_mb"] for x in s]), "mem_method": s[0]["mem_method"]})
    ev = res["eval"] or {}
    for name, vals in ev.get("per_user", {}).items():
        rows.append({"section": "eval", "variant": EVAL_NAMES.get(name, name), "layout": name, "loss": "", "k": 19,
                     "batch": ev["users"], **_stats([x[0] for x in vals], [x[1] for x in vals]), "unit": "s/user",
                     "peak_mb": median([x[2] for x in vals]), "growth_mb": "", "mem_method": ""})
    pk = res.get("packing") or {}
    for name, v in pk.get("variants", {}).items():
        rows.append({"section": "sft packing", "variant": f"{name}: padding {100 * v['padding']:.1f}%, "
                     f"{v['tokens_per_cpu_s']:.0f} tokens/CPU s", "layout": "shared_prefix", "loss": "sft",
                     "k": 0, "batch": pk["batch"], **_stats([v["cpu_s_per_step"]], [v["cpu_s_per_step"]]),
                     "unit": "s/step", "peak_mb": "", "growth_mb": "", "mem_method": ""})
    rc = res["refcache"] or {"epoch_s": {}}
    for name, vals in rc["epoch_s"].items():
        rows.append({"section": "refcache", "variant": name, "layout": "shared_prefix", "loss": "sdpo (reference)",
                     "k": None, "batch": rc["examples"], **_stats([w for w, _ in vals], [c for _, c in vals]),
                     "unit": "s/epoch", "peak_mb": "", "growth_mb": "", "mem_method": ""})
    return rows


EVAL_NAMES = {f"{p}/before": f"{p}: two passes, row order (before)" for p in ("ranking", "generation", "both")}
EVAL_NAMES.update({f"{p}/after": f"{p}: one prompt pass, by length" for p in ("ranking", "generation", "both")})
EVAL_NAMES["ranking/before"] = "ranking: packed row, row order (before)"
EVAL_NAMES["generation/before"] = "generation: generate(), row order (before)"


def targets(rows: list[dict[str, Any]], ks: list[int]) -> list[tuple[str, str, bool | None]]:
    by = {r["variant"]: r for r in rows}

    def t(name):  # CPU seconds: the work done, robust to other jobs on a shared CPU
        return by[name]["median_cpu_s"] if name in by else None

    out = []
    for k, goal in ((3, 3.0), (15, 8.0)):
        d, s = t(f"duplicate K={k}"), t(f"shared_prefix K={k}")
        if d and s:
            out.append((f"shared-prefix >= {goal:g}x faster than duplicate at K={k}", f"{d / s:.2f}x", d / s >= goal))
    napo = next((r for r in rows if r["variant"].startswith("NAPO")), None)
    sdpo = next((r for r in rows if r["variant"].startswith("S-DPO duplicate")), None)
    if napo and sdpo and napo["median_cpu_s"] and sdpo["median_cpu_s"]:
        ratio = napo["median_cpu_s"] / sdpo["median_cpu_s"]
        out.append(("NAPO share=exact costs no more than S-DPO duplicate (K=3)", f"NAPO/S-DPO = {ratio:.2f}",
                    ratio <= 1.0))
    b0, b1 = t(EVAL_NAMES["both/before"]), t(EVAL_NAMES["both/after"])
    if b0 and b1:
        out.append(("eval=both: one prompt pass faster than two passes (same users)", f"{b0 / b1:.2f}x", b0 > b1))
    for p in ("ranking", "generation"):
        x0, x1 = t(EVAL_NAMES[f"{p}/before"]), t(EVAL_NAMES[f"{p}/after"])
        if x0 and x1:
            out.append((f"{p} evaluation no slower than before (same users)", f"{x0 / x1:.2f}x", x1 <= x0 * 1.05))
    lo, hi = by.get(f"shared_prefix K={min(ks)}"), by.get(f"shared_prefix K={max(ks)}")
    if lo and hi and lo["peak_mb"] and hi["peak_mb"]:
        ratio = hi["peak_mb"] / lo["peak_mb"]
        growth = (f"; step growth {hi['growth_mb']:.0f} vs {lo['growth_mb']:.0f} MB"
                  f" = {hi['growth_mb'] / max(lo['growth_mb'], 1e-9):.2f}x")
        out.append((f"shared-prefix peak memory at K={max(ks)} <= 1.5x that at K={min(ks)}",
                    f"{ratio:.2f}x (peak {hi['peak_mb']:.0f} vs {lo['peak_mb']:.0f} MB{growth})", ratio <= 1.5))
    packing = [r for r in rows if r["section"] == "sft packing"]
    if len(packing) == 2 and packing[0]["median_cpu_s"] and packing[1]["median_cpu_s"]:
        ratio = packing[0]["median_cpu_s"] / packing[1]["median_cpu_s"]
        out.append(("SFT packing: packed step faster than one prompt per row (same batches)", f"{ratio:.2f}x",
                    ratio > 1.0))
    c, w = t("no cache"), t("warm cache")
    if c and w:
        out.append(("reference cache: warm-cache epoch faster than no-cache epoch (no numeric target)",
                    f"{c / w:.2f}x", c > w))
    return out


def _fmt(x, nd=3):
    return "" if x in ("", None) else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def markdown(rows, tg, meta) -> str:
    lines = [f"Model: {meta['model']}; data: {meta['data']}; device: {meta['device']}; torch threads: "
             f"{meta['env']['threads']} ({meta['env']['cpus']} CPUs); rounds: {meta['rounds']}; wall: "
             f"{meta['wall_s']:.0f} s. Times are medians over rounds; CPU = this process's CPU seconds (the "
             "work done; the targets use it), wall = elapsed (also counts waiting for other jobs).", ""]
    lines += ["| section | variant | K | batch | n | CPU s (median) | wall s (median) | unit | peak MB | "
              "step growth MB |", "|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['section']} | {r['variant']} | {_fmt(r['k'])} | {r['batch']} | {r['repeats']} | "
                     f"{_fmt(r['median_cpu_s'])} | {_fmt(r['median_s'])} | {r['unit']} | "
                     f"{_fmt(r['peak_mb'], 0)} | {_fmt(r['growth_mb'], 0)} |")
    ev = meta.get("eval") or {}
    if ev.get("agreement"):
        a, tk = ev["agreement"], ev["tokens"]
        pad = {k: 1 - v["prompt"] / max(1, v["prompt_padded"]) for k, v in tk.items() if v}
        lines += ["", f"Evaluation, after vs before on the same {a['users']} users ({a['dtype']}): answers equal "
                  f"{a['answers_equal']}/{a['users']}, top-1 candidate equal {a['top1_equal']}/{a['users']}, max "
                  f"|score difference| {a['max_abs_score_diff']:.2g}. Prompt padding: "
                  + ", ".join(f"{k} {100 * v:.1f}%" for k, v in pad.items()) + " of the prompt tokens computed."]
    if meta.get("peak"):
        from benchmarks.efficiency import summary

        lines += ["", summary(meta["peak"])]
    lines += ["", f"Memory: {next((r['mem_method'] for r in rows if r['mem_method']), 'n/a')}.", "",
              "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'n/a' if ok is None else 'met' if ok else 'MISSED'} |" for name, value, ok in tg]
    return "\n".join(lines) + "\n"


def plot(rows, path: Path, ks: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {r["variant"]: r for r in rows}
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for layout in ("shared_prefix", "prefix_cache", "duplicate"):
        pts = [(k, by[f"{layout} K={k}"]) for k in ks if by.get(f"{layout} K={k}", {}).get("median_cpu_s")]
        axes[0].plot([k for k, _ in pts], [r["median_cpu_s"] for _, r in pts], "o-", label=layout)
        axes[1].plot([k for k, _ in pts], [r["peak_mb"] for _, r in pts], "o-", label=layout)
    axes[0].set(title="training step", xlabel="K negatives", ylabel="CPU s/step")
    axes[1].set(title="peak memory of the step", xlabel="K negatives", ylabel="MB")
    for ax in axes[:2]:
        ax.legend()
        ax.set_xticks(ks)
    for ax, section, title in ((axes[2], "napo", "NAPO exact vs S-DPO duplicate (K=3)"),
                               (axes[3], "eval", "evaluation, s per user")):
        sel = [r for r in rows if r["section"] == section and r["median_cpu_s"]]
        ax.bar([r["variant"].replace(" (shared_prefix)", "\n").replace(" B=", "\nB=") for r in sel],
               [r["median_cpu_s"] for r in sel], color=["tab:blue", "tab:orange"][: len(sel)])
        ax.set(title=title, ylabel=("CPU " + sel[0]["unit"]) if sel else "")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    ks = [int(x) for x in args.ks.split(",")]
    mode = mode_of(args)
    model = {"quick": "tiny random Llama", "full": "SmolLM2-135M-Instruct (dtype auto, as a job: bf16 where the CPU is fast at it)",
             "1b": "random-initialised ~1B Llama (bf16, SDPA)"}[mode]
    data = "synthetic" if mode == "quick" else "LastFM"
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("--device cuda: CUDA is not available here", file=sys.stderr)
            return 2
    print(f"benchmark: {model} on {data} prompts, device {args.device}, "
          f"{'in-process' if args.inprocess else 'one fresh subprocess per training variant and round'}\n"
          f"  layout sweep: K in {ks}, {args.batch} prompt(s) per step; NAPO/S-DPO: batch {args.napo_batch}, "
          f"K={args.napo_k}\n  eval: {args.eval_users} users, batch {args.eval_batch}, "
          f"max_new_tokens {args.max_new_tokens}; reference cache: {args.ref_examples} examples, batch "
          f"{args.ref_batch}, K={args.ref_k}\n  rounds {args.min_rounds}..{args.max_rounds} within "
          f"{args.budget_s:.0f} s", flush=True)
    from benchmarks import efficiency

    peaks = [efficiency.measure_peak(args.threads, args.quick)]
    res = run_all(args)
    peaks.append(efficiency.measure_peak(args.threads, args.quick))
    from benchmarks import contention

    res["contention"] = contention.measure(args, mode) if args.contention_rounds else []
    from benchmarks import memory

    res["memory"] = memory.measure(args, mode) if args.memory else []
    from benchmarks.common import env_info

    rows = rows_of(res)
    peak = efficiency.best_peak(peaks)
    tg = targets(rows, ks) + efficiency.targets(rows, res, peak, args.napo_k) + contention.targets(res["contention"])
    tg += memory.targets(res["memory"])
    env = env_info()
    env["threads"] = args.threads or env["threads"]  # what the workers ran with
    meta = {"model": model, "data": data, "device": args.device, "env": env, "rounds": res["rounds"],
            "wall_s": res["wall_s"], "args": vars(args), "peak": peak,
            "eval": {k: (res["eval"] or {}).get(k) for k in ("agreement", "tokens")}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = markdown(rows, tg, meta)
    (out / "bench.md").write_text(md)
    (out / "bench.json").write_text(json.dumps({"meta": meta, "raw": res}, indent=1, default=str))
    plot(rows, out / "bench.png", ks)
    print()
    print(md)
    print(f"written: {out / 'bench.csv'}, {out / 'bench.md'}, {out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
