"""`python -m benchmarks.gpu_check` (run by benchmarks/gpu_check.sh): the prepared GPU check of issue 17.

On a random-weight Llama (1B class on CUDA: hidden 2048, 16 layers, 32/8 heads, MLP 8192; the tiny
test model with ``--device cpu``) over the synthetic data's prompts, it prints:

1. equality of the packed (``shared_prefix``), KV-cache (``prefix_cache``) and ``duplicate`` layouts:
   completion log-probs and LoRA gradients, in fp32 and in bf16 (tolerances below);
2. which attention kernel each layout ran (the SDPA backend ops the profiler saw);
3. per K (3 and 15): training step time, tokens/s, MFU against the bf16 matmul rate measured here,
   peak memory;
4. ranking against generation evaluation per user, and ranking's time relative to its token-count
   bound (generation's time scaled by the ratio of the tokens each computes).

Tolerances. fp32: the layouts compute the same sums in a different order and shape, so they differ
by accumulated fp32 rounding (unit 6e-8) through every layer: far below 1e-3 on a summed log-prob,
while a masking or position error moves it by O(1). The check requires max |log-prob difference| <=
1e-3 and relative L2 difference of the LoRA gradients <= 1e-3. bf16 (unit 2^-8 = 0.4%): the layouts
cannot agree bit for bit, because each rounds differently; "equal" here means that no layout is
further from the fp32 values (of the same weights and inputs) than bf16 rounding puts the duplicate
layout itself: each layout's bf16 error against fp32 must be <= 2x the duplicate layout's bf16
error against fp32 (x2: two roundings of the same size can add), for the log-probs (max abs) and the
gradients (relative L2).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from typing import Any

NEEDED = (
    "torch",
    "transformers",
    "peft",
    "lightning",
    "hydra",
    "omegaconf",
    "pandas",
    "pyarrow",
    "rich",
    "numpy",
)
LAYOUTS = ("shared_prefix", "prefix_cache", "duplicate")
FP32_TOL = 1e-3
BF16_FACTOR = 2.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bash benchmarks/gpu_check.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) | cpu (the tiny model)")
    ap.add_argument("--size", choices=["1b", "tiny"], default=None, help="default: 1b on cuda, tiny on cpu")
    ap.add_argument("--ks", default="3,15", help="negatives per prompt of the step measurements")
    ap.add_argument(
        "--batch", type=int, default=None, help="prompts per training step (default 8 cuda, 2 cpu)"
    )
    ap.add_argument("--steps", type=int, default=3, help="timed steps per K (after one warm-up step)")
    ap.add_argument("--users", type=int, default=None, help="evaluation users (default 32 cuda, 4 cpu)")
    ap.add_argument("--eval-batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--cache-dir", default=None, help="default: a temporary directory")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.size = args.size or ("1b" if cuda else "tiny")
    args.batch = args.batch or (8 if cuda else 2)
    args.users = args.users or (32 if cuda else 4)
    return args


def missing_modules() -> list[str]:
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]


class KernelProbe:
    """The attention ops the profiler saw (SDPA's backend ops, or eager's matmul + softmax)."""

    def __enter__(self):
        from torch.profiler import ProfilerActivity, profile

        self.prof = profile(activities=[ProfilerActivity.CPU])
        self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        self.prof.__exit__(*exc)
        names = {e.key for e in self.prof.key_averages()}
        sdpa = sorted(
            n
            for n in names
            if ("attention" in n or "flash" in n) and n != "aten::scaled_dot_product_attention"
        )
        self.forward = [n for n in sdpa if "backward" not in n] or (
            ["eager (matmul + softmax)"] if "aten::softmax" in names or "aten::_softmax" in names else ["?"]
        )
        self.backward = [n for n in sdpa if "backward" in n]
        return False


def layout_pass(model, prompts, comps, pad: int, layout: str):
    """Summed log-probs [B, M] and the gradients of their sum w.r.t. every trainable (LoRA) tensor."""
    import torch

    from napo_lab.models.logprobs import completion_logps

    model.zero_grad(set_to_none=True)
    with KernelProbe() as probe:
        logps, _ = completion_logps(model, prompts, comps, pad, layout)
        logps.float().sum().backward()
    grads = [
        p.grad.detach().float().flatten()
        for p in model.parameters()
        if p.requires_grad and p.grad is not None
    ]
    return logps.detach().float().cpu(), torch.cat(grads).cpu(), probe


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def equality(setup, pad: int, out: list[str]) -> bool:
    import torch

    batch = setup.train_batch(3, 2)
    prompts, comps = batch["prompt_ids"], batch["completion_ids"]
    # LoRA B starts at zero, which makes every A gradient zero: give B small random values first.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in setup.model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    fp32 = {lay: layout_pass(setup.model, prompts, comps, pad, lay) for lay in LAYOUTS}
    ok = True
    ref_v, ref_g, _ = fp32["duplicate"]
    for lay in LAYOUTS:
        v, g, _ = fp32[lay]
        dv, dg = float((v - ref_v).abs().max()), rel(g, ref_g)
        good = dv <= FP32_TOL and dg <= FP32_TOL
        ok &= good
        out.append(
            f"[equality fp32] {lay:<13} vs duplicate: max|dlogp| {dv:.2e}, grad rel-L2 {dg:.2e} "
            f"(tol {FP32_TOL:g}) {'OK' if good else 'FAIL'}"
        )
    setup.model.to(torch.bfloat16)
    bf16 = {lay: layout_pass(setup.model, prompts, comps, pad, lay) for lay in LAYOUTS}
    nv = float((bf16["duplicate"][0] - fp32["duplicate"][0]).abs().max())
    ng = rel(bf16["duplicate"][1], fp32["duplicate"][1])
    for lay in LAYOUTS:
        v, g, probe = bf16[lay]
        ev, eg = float((v - fp32[lay][0]).abs().max()), rel(g, fp32[lay][1])
        dv, dg = float((v - bf16["duplicate"][0]).abs().max()), rel(g, bf16["duplicate"][1])
        good = ev <= BF16_FACTOR * nv + 1e-6 and eg <= BF16_FACTOR * ng + 1e-6
        ok &= good
        out.append(
            f"[equality bf16] {lay:<13} error vs fp32: max|dlogp| {ev:.2e} (tol {BF16_FACTOR:g} x {nv:.2e}), "
            f"grad rel-L2 {eg:.2e} (tol {BF16_FACTOR:g} x {ng:.2e}); vs bf16 duplicate: {dv:.2e}, {dg:.2e} "
            f"{'OK' if good else 'FAIL'}"
        )
        out.append(
            f"[kernel] {lay:<13} forward: {', '.join(probe.forward)}; backward: "
            f"{', '.join(probe.backward) or 'n/a'}"
        )
    return ok


def steps(setup, args, peak: float, out: list[str]) -> None:
    import torch

    from benchmarks.common import PeakMemory, Timer, make_optimizer, train_step
    from benchmarks.flops import Arch, batch_work, flops

    cuda = setup.device.startswith("cuda")
    arch = Arch.of(setup.model)
    for k in [int(x) for x in args.ks.split(",")]:
        module = setup.module(setup.loss("sdpo"), "shared_prefix")
        opt = make_optimizer(module)
        batch = setup.train_batch(k, args.batch)

        train_step(module, opt, batch, setup.device, setup.autocast)  # warm-up: kernels, allocator, optimizer state
        with PeakMemory(setup.device) as mem, Timer(setup.device) as t:
            for _ in range(args.steps):
                train_step(module, opt, batch, setup.device, setup.autocast)
        seconds = (t.wall if cuda else t.cpu) / args.steps
        work = batch_work(batch)
        mfu = flops(arch, work, train=True) / seconds / peak
        out.append(
            f"[step] K={k:<2} batch {args.batch}: {seconds * 1e3:.1f} ms/step ({'wall' if cuda else 'CPU'}), "
            f"{work.tokens / seconds:.0f} tokens/s ({work.tokens} tokens), MFU {100 * mfu:.1f}% of the "
            f"bf16 matmul rate, peak memory {mem.peak_mb:.0f} MB ({mem.method})"
        )
        del module, opt
        if cuda:
            torch.cuda.empty_cache()


def ranking_vs_generation(setup, args, out: list[str]) -> None:
    import torch

    from benchmarks.common import Timer
    from benchmarks.tasks import eval_work
    from napo_lab.eval.prompt_pass import answers_and_scores

    dm = setup.datamodule(0, batch_size=args.eval_batch, test_limit=args.users)
    rows = dm.eval_dataset("test").rows
    n, cuda = len(rows), setup.device.startswith("cuda")
    times: dict[str, float] = {}
    lengths: dict[str, Any] = {}
    with torch.no_grad():
        for rep in range(2):  # the first round warms up and is discarded
            for p in ("ranking", "generation") if rep == 0 else ("generation", "ranking"):
                with Timer(setup.device) as t:
                    res = answers_and_scores(
                        setup.model,
                        setup.tokenizer,
                        dm.builder.title_ids,
                        dm.eval_batches(rows),
                        n,
                        generate=p == "generation",
                        rank=p == "ranking",
                        max_new_tokens=args.max_new_tokens,
                        desc=p,
                    )
                times[p], lengths[p] = (t.wall if cuda else t.cpu) / n, res.lengths
    work = eval_work(setup, dm, rows, lengths["ranking"], lengths["generation"])
    tr, tg = work["ranking"]["tokens"], work["generation"]["tokens"]
    bound = times["generation"] * tr / tg
    out.append(
        f"[eval] {n} users, batch {args.eval_batch}: ranking {times['ranking'] * 1e3:.1f} ms/user "
        f"({tr} tokens), generation {times['generation'] * 1e3:.1f} ms/user ({tg} tokens, <= "
        f"{args.max_new_tokens} new per user); ranking / generation {times['ranking'] / times['generation']:.2f}x; "
        f"ranking / its token-count bound {times['ranking'] / bound:.2f}x (target <= 1.25x)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    missing = missing_modules()
    if missing:
        print(
            f"gpu_check: missing Python modules {missing}; install them from wheels "
            "(bash benchmarks/gpu_check.sh --download-wheels on a machine with network)",
            file=sys.stderr,
        )
        return 2
    import torch
    import transformers

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: --device cuda but CUDA is not available here; use --device cpu", file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference is fp32
    from benchmarks.common import Setup
    from benchmarks.flops import matmul_rate

    t0 = time.perf_counter()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="napo_gpu_check")
    mode = "gpu_1b" if args.size == "1b" else "gpu_tiny"
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(
        f"gpu_check: device {args.device} ({name}), model {args.size} (random weights), torch {torch.__version__}, "
        f"transformers {transformers.__version__}, threads {torch.get_num_threads()}",
        flush=True,
    )
    torch.manual_seed(0)
    setup = Setup(mode, args.device, cache).load(with_reference=False)
    n_params = sum(p.numel() for p in setup.model.parameters())
    attn = getattr(setup.model.get_base_model().config, "_attn_implementation", "?")
    print(
        f"[model] {n_params / 1e6:.2f} M parameters, attention implementation {attn}, loaded in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    out: list[str] = []
    ok = equality(setup, setup.tokenizer.pad_token_id, out)
    print("\n".join(out), flush=True)
    rate = matmul_rate("bfloat16", n=8192 if args.device.startswith("cuda") else 512, device=args.device)
    peak = rate["flops_per_s"] if args.device.startswith("cuda") else rate["flops_per_cpu_s"]
    print(f"[matmul] bf16 {rate['n']}^3 GEMM: {peak / 1e12:.3f} TFLOP/s", flush=True)
    out = []
    steps(setup, args, peak, out)
    ranking_vs_generation(setup, args, out)
    print("\n".join(out), flush=True)
    print(
        f"GPU_CHECK {'PASS' if ok else 'FAIL (layout equality)'} in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
