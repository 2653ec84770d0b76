"""Model FLOPs counted from token counts and the architecture, and the machine's matmul rate.

Counted (multiply-add = 2 FLOPs; elementwise work, norms, rotary, softmax and the loss are left out):

- linear layers: ``2 * W`` per token, W = the decoder's matmul weights (q, k, v, o, gate, up, down over
  all layers; the embedding is a lookup, not a matmul), plus LoRA's ``2 * r * (in + out)`` per adapted
  module and token;
- attention: ``4 * layers * heads * head_dim`` per (query, key) pair that the mask lets through (the
  QK^T scores and the weighted sum of V, ``2 * head_dim`` each per head);
- LM head: ``2 * hidden * vocab`` per position that reaches it (only completion positions do, plus the
  history targets of the SFT stage, plus one per generated token).

Training (LoRA): the backward pass needs input gradients of every matmul (as much as its forward) and
weight gradients of the trainable LoRA matrices only (frozen weights get none). So a training step
does ``forward + linear + 2 * lora + 2 * attention + head``, i.e. about 2x the forward, not the 3x of
full fine-tuning (``6 * params * tokens``); with the 3x convention every training MFU below would be
1.5x higher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Arch:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    lora_r: int = 0
    lora_targets: tuple[str, ...] = ()

    @classmethod
    def of(cls, model) -> Arch:
        """From a (PEFT-wrapped) transformers Llama-style causal LM."""
        cfg = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
        heads = int(cfg.num_attention_heads)
        head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
        r, targets = 0, ()
        peft_cfg = getattr(model, "peft_config", None)
        if peft_cfg:
            lora = next(iter(peft_cfg.values()))
            r, targets = int(lora.r), tuple(sorted(lora.target_modules))
        return cls(
            int(cfg.num_hidden_layers),
            int(cfg.hidden_size),
            heads,
            int(getattr(cfg, "num_key_value_heads", None) or heads),
            head_dim,
            int(cfg.intermediate_size),
            int(cfg.vocab_size),
            r,
            targets,
        )

    def modules(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each matmul of one decoder layer."""
        d, q, kv, i = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        )
        return {
            "q_proj": (d, q),
            "k_proj": (d, kv),
            "v_proj": (d, kv),
            "o_proj": (q, d),
            "gate_proj": (d, i),
            "up_proj": (d, i),
            "down_proj": (i, d),
        }

    @property
    def weights(self) -> int:
        return self.layers * sum(a * b for a, b in self.modules().values())

    @property
    def lora_weights(self) -> int:
        return self.layers * sum(
            self.lora_r * (a + b) for m, (a, b) in self.modules().items() if m in self.lora_targets
        )


@dataclass
class Work:
    """Tokens run through the decoder, (query, key) pairs attended, positions through the LM head."""

    tokens: int = 0
    pairs: int = 0
    head: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(self.tokens + other.tokens, self.pairs + other.pairs, self.head + other.head)


def causal(n: int, past: int = 0) -> Work:
    """n tokens after ``past`` cached ones, each attending to everything before it and itself."""
    return Work(n, n * past + n * (n + 1) // 2, 0)


def packed(prompt: int, completions: list[int], head_extra: int = 0) -> Work:
    """One shared-prefix row: the prompt, then each completion seeing the prompt and its own earlier
    tokens; every completion token reaches the head (plus ``head_extra`` prompt positions)."""
    w = causal(prompt)
    for c in completions:
        w = w + causal(c, past=prompt)
    return Work(w.tokens, w.pairs, sum(completions) + head_extra)


def ranking(prompt: int, title_tokens: int, titles: list[int] | None = None) -> Work:
    """Prompt pass plus the titles row over its cache (``titles``: each title's length)."""
    return packed(prompt, titles if titles is not None else [title_tokens])


def generation(prompt: int, answer: int) -> Work:
    """Prompt pass, then ``answer - 1`` fed tokens; the head predicts each of the ``answer`` tokens."""
    w = causal(prompt) + causal(max(0, answer - 1), past=prompt)
    return Work(w.tokens, w.pairs, answer)


def forward_flops(arch: Arch, w: Work) -> dict[str, int]:
    return {
        "linear": 2 * arch.weights * w.tokens,
        "lora": 2 * arch.lora_weights * w.tokens,
        "attention": 4 * arch.layers * arch.heads * arch.head_dim * w.pairs,
        "head": 2 * arch.hidden * arch.vocab * w.head,
    }


def flops(arch: Arch, w: Work, train: bool = False) -> int:
    """FLOPs of a forward (``train=False``) or of forward + backward of a LoRA step (module doc)."""
    f = forward_flops(arch, w)
    total = sum(f.values())
    if train:
        total += f["linear"] + 2 * f["lora"] + 2 * f["attention"] + f["head"]
    return total


def batch_work(batch: dict[str, Any], history: bool = False) -> Work:
    """The shared-prefix work of a training batch (collate_train): one packed row per prompt."""
    total = Work()
    for b, prompt in enumerate(batch["prompt_ids"]):
        extra = 0
        if history:
            extra = sum(1 <= int(t) < len(prompt) for t in batch["history_positions"][b])
        total = total + packed(len(prompt), [len(c) for c in batch["completion_ids"][b]], extra)
    return total


def matmul_rate(dtype: str = "float32", n: int = 2048, repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """The best of ``repeats`` n x n x n GEMMs at torch's current thread count: FLOP per CPU second of
    this process (all its threads; CPU only) and per wall second (synchronised on CUDA)."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, device=device).to(dt), torch.randn(n, n, device=device).to(dt)
    torch.mm(a, b)  # warm-up
    sync()
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        sync()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    work = 2.0 * n**3
    return {
        "flops_per_cpu_s": work / max(best_cpu, 1e-9),
        "flops_per_s": work / best_wall,
        "n": n,
        "threads": torch.get_num_threads(),
        "dtype": dtype,
    }
