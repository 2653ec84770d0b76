"""The precision attention is computed in (config ``attention_dtype``; docs/performance.md, "Third
pass: attention in fp32 on CPU").

A model whose weights compute in bf16 (or fp16) hands SDPA bf16 queries, keys and values. On a CPU,
torch's flash-attention kernel is slow in bf16 for this project's short rows (SmolLM2: 9 heads x 64
dims over ~200 tokens): its backward took a quarter of an SFT step for ~1% of the step's FLOPs. The
same kernel in fp32 is faster there (an SFT step on SmolLM2: 3.97 -> 3.23 CPU s, side by side) and closer to exact
attention (LoRA gradients against fp64 attention: 5.7% relative error instead of 11%, the rest of the
model in bf16 either way). ``attention_dtype``:

- ``auto`` (default): fp32 on CPU, the model's own dtype elsewhere (GPU kernels are built for bf16);
- ``float32``: fp32 on every device (e.g. to compare a GPU run against a CPU one);
- ``native``: the dtype the model computes in (what transformers does).

Only SDPA attention is affected (``attn_implementation: sdpa``, the default); eager attention and the
flash-attention packages run as they are. The queries, keys and values are upcast, the kernel runs
outside autocast (which would cast them straight back), and its output is rounded back to the model's
dtype before the output projection, so everything around attention is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from napo_lab.errors import UserError

MODES = ("auto", "float32", "native")
_FLAG = "_napo_attention_dtype"
_installed: dict[str, Any] = {}


def _upcast(mode: str | None, query: torch.Tensor) -> bool:
    if mode is None or mode == "native" or query.dtype not in (torch.bfloat16, torch.float16):
        return False
    return mode == "float32" or query.device.type == "cpu"


def _sdpa(module, query, key, value, attention_mask, *args, **kwargs):
    native = _installed["sdpa"]
    if not _upcast(getattr(module, _FLAG, None), query):
        return native(module, query, key, value, attention_mask, *args, **kwargs)
    dtype = query.dtype
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast(query.device.type, enabled=False):
        out, weights = native(module, query.float(), key.float(), value.float(), attention_mask, *args, **kwargs)
    return out.to(dtype), weights


def _install() -> None:
    """Route transformers' SDPA attention through ``_sdpa`` (once per process). Modules without the
    flag (every model napo_lab did not load) take the unchanged path."""
    if _installed:
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    _installed["sdpa"] = ALL_ATTENTION_FUNCTIONS["sdpa"]
    ALL_ATTENTION_FUNCTIONS["sdpa"] = _sdpa


def set_attention_dtype(model: torch.nn.Module, mode: str) -> int:
    """Mark every attention module of ``model`` with ``mode`` (see the module doc); returns how many
    modules were marked (0 for a model without transformers-style attention)."""
    if mode not in MODES:
        raise UserError(f"attention_dtype={mode!r} is not one of {' | '.join(MODES)}")
    _install()
    n = 0
    for m in model.modules():
        if type(m).__name__.endswith("Attention") and hasattr(m, "config"):
            setattr(m, _FLAG, mode)
            n += 1
    return n
