"""The pieces every benchmark task shares: a composed config, the model with a trainable and a
frozen reference adapter, real batches, one timed training step, and peak-memory probes."""

from __future__ import annotations

import gc
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Model settings per benchmark mode. "quick": the tiny random Llama on the synthetic data (seconds,
# no data directory). "full": the embedded SmolLM2-135M-Instruct on LastFM prompts. "1b": a
# random-initialised ~1B Llama (bf16, SDPA) for --device cuda; untested here (no GPU).
MODES: dict[str, dict[str, Any]] = {
    "quick": {"overrides": ["model=tiny_random", "dataset=synthetic"]},
    "full": {"overrides": ["model=smollm2_135m", "dataset=lastfm"]},
    "1b": {"overrides": ["model=tiny_random", "dataset=lastfm", "model.loader.hidden_size=2048",
                         "model.loader.intermediate_size=8192", "model.loader.num_layers=16",
                         "model.loader.num_heads=32", "model.loader.num_kv_heads=8", "model.loader.dtype=bfloat16",
                         "+model.loader.max_positions=4096", "model.lora.lora_dropout=0.0"]},
    # benchmarks/gpu_check.sh: random weights on the synthetic data (no data directory, no GGUF), loaded
    # in fp32 (the fp32 reference of the equality check) and cast to bf16 by the check.
    "gpu_1b": {"overrides": ["model=tiny_random", "dataset=synthetic", "model.loader.hidden_size=2048",
                             "model.loader.intermediate_size=8192", "model.loader.num_layers=16",
                             "model.loader.num_heads=32", "model.loader.num_kv_heads=8",
                             "+model.loader.max_positions=4096", "model.lora.r=8"]},
    "gpu_tiny": {"overrides": ["model=tiny_random", "dataset=synthetic"]},
}


def compose(mode: str, cache_dir: str, extra: list[str] | None = None):
    from napo_lab.config.compose import compose as compose_config

    out = Path(tempfile.mkdtemp(prefix="napo_bench_out"))
    return compose_config([f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", "logger=none",
                           "trainer.enable_progress_bar=false", *MODES[mode]["overrides"], *(extra or [])])


# ---------------------------------------------------------------------------------------------
# Memory probes
# ---------------------------------------------------------------------------------------------
def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of one measured region.

    CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats. CPU: the process's peak
    resident set (VmHWM), reset to the current RSS just before the region by writing 5 to
    /proc/self/clear_refs; where that is not allowed, ru_maxrss (peak over the whole process life,
    model loading included), and the method name says so.
    """

    def __init__(self, device: str):
        self.device = device
        self.where = "fresh process" if os.environ.get("NAPO_BENCH_WORKER") else "shared process (--inprocess)"
        self.method = ""
        self.baseline_mb = 0.0

    def __enter__(self):
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline_mb = torch.cuda.memory_allocated() / 2**20
            self.method = "cuda max_memory_allocated"
            return self
        self.baseline_mb = (_status_kb("VmRSS") or 0) / 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = f"peak RSS (VmHWM reset via clear_refs), {self.where}"
        except OSError:
            self.method = f"ru_maxrss (not resettable: includes model loading), {self.where}"
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif self.method.startswith("peak RSS"):
            self.peak_mb = (_status_kb("VmHWM") or 0) / 1024
        else:
            import resource

            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.growth_mb = max(0.0, self.peak_mb - self.baseline_mb)
        return False


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# Model, data and batches
# ---------------------------------------------------------------------------------------------
@dataclass
class Setup:
    mode: str
    device: str
    cache_dir: str
    threads: int | None = None
    cfg: Any = None
    model: Any = None
    tokenizer: Any = None
    prepared: Any = None
    sft_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def load(self, with_reference: bool = True) -> Setup:
        import torch

        from napo_lab.models.adapters import attach_reference, save_adapter
        from napo_lab.recipe import build

        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.cfg = compose(self.mode, self.cache_dir)
        from napo_lab.memory import configure, cpu_kernel_cache

        configure(self.cfg.get("malloc"))  # as a job does (run.execute)
        cpu_kernel_cache(self.cfg.get("cpu_kernel_cache"))
        t = time.perf_counter()
        self.prepared = build.data(self.cfg)
        self.model, self.tokenizer = build.model(self.cfg)
        if self.mode == "1b" and hasattr(self.model, "set_attn_implementation"):
            try:
                self.model.set_attn_implementation("sdpa")
            except (ValueError, AttributeError):
                pass
        if with_reference:
            # A saved copy of the adapter is the frozen reference (as the SFT adapter is in a run).
            self.sft_path = Path(tempfile.mkdtemp(prefix="napo_bench_ref")) / "adapter"
            save_adapter(self.model, self.sft_path)
            attach_reference(self.model, self.sft_path)
        self.model.to(self.device)
        self.timings["load_s"] = time.perf_counter() - t
        return self

    def autocast(self):
        """The mixed precision a job computes under (``build.autocast``: bf16 autocast where the trainer's
        precision resolves to bf16-mixed, as Lightning's MixedPrecision plugin runs training steps; a
        no-op at full precision), so a measured step or evaluation is the job's computation."""
        from napo_lab.recipe import build

        return build.autocast(self.cfg, self.model)

    def datamodule(self, k: int, batch_size: int = 1, train_limit: int | None = None,
                   test_limit: int | None = None, history: bool = False):
        from napo_lab.cache import canonical
        from napo_lab.data.datamodule import RecDataModule

        ds = dict(canonical(self.cfg.dataset))
        ds["train_limit"], ds["test_limit"] = train_limit, test_limit
        return RecDataModule(self.prepared, self.tokenizer, ds, k, {"strategy": "in_prompt"}, batch_size,
                             batch_size, 0, int(self.cfg.seed), bool(self.cfg.model.get("chat_template", False)),
                             history)

    def train_batch(self, k: int, batch_size: int, truncate_prompt: int | None = None, history: bool = False):
        from napo_lab.data.datamodule import collate_train

        dm = self.datamodule(k, history=history)
        examples = [dm.train_dataset[(0, i)] for i in range(batch_size)]
        if truncate_prompt:
            for e in examples:
                e["prompt_ids"] = e["prompt_ids"][-truncate_prompt:]
        return collate_train(examples, dm.max_history)

    def loss(self, name: str):
        from hydra.utils import instantiate

        if name == "sft":  # as the SFT stage builds it (napo_lab.recipe.stages)
            from napo_lab.losses.sft import SFTLoss

            return SFTLoss(history_weight=float(self.cfg.sft.history_weight))

        cfg = compose(self.mode, self.cache_dir, [f"loss={name.removesuffix('_ref')}"])
        obj = instantiate(cfg.loss.objective)
        if name == "sdpo":
            # The policy-only step: the reference comes from the reference cache (see docs/performance.md).
            obj.needs_reference = False
            if hasattr(obj, "use_reference"):
                obj.use_reference = False
        return obj

    def module(self, loss, layout: str, stage: str = "pref"):
        import torch

        from napo_lab.lit.module import RecLitModule

        seqrec = None
        if getattr(loss, "needs_sequential_model", False):
            from napo_lab.models.seqrec.factory import build_seqrec

            torch.manual_seed(0)
            seqrec = build_seqrec(self.cfg.seqrec, self.prepared.n_items)  # untrained: cost only
            seqrec.eval()
        module = RecLitModule(self.model, loss, self.tokenizer.pad_token_id, {"lr": 1e-4}, layout, stage,
                              seqrec, torch.tensor(self.prepared.train_counts, dtype=torch.float32))
        module.to(self.device)
        module.train()
        return module


def make_optimizer(module):
    import torch

    params = [p for p in module.model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-5)


class Timer:
    """Wall seconds and this process's CPU seconds (all its threads) of a region. On a CPU shared with
    other jobs the CPU seconds measure the work done; wall seconds also count the waiting."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        sync(self.device)
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        return False


def train_step(module, opt, batch, device: str, amp) -> tuple[float, float]:
    """One optimisation step: log-probs (policy, with gradients) and loss under ``amp()`` (a context
    factory, ``Setup.autocast``: the forward under the job's mixed precision, as the Trainer runs it),
    backward, AdamW. Returns (wall seconds, CPU seconds)."""
    with Timer(device) as t:
        with amp():
            out = module.compute_loss(batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return t.wall, t.cpu


def env_info() -> dict[str, Any]:
    import platform

    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
