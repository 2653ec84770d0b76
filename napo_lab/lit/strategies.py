"""Strategy factories for the ``strategy`` group where Lightning's classes need a little help."""

from __future__ import annotations

from collections.abc import Sequence


def fsdp(auto_wrap_layers: Sequence[str] = (), use_orig_params: bool = True, sharding_strategy: str = "FULL_SHARD",
         **kwargs):
    """FSDPStrategy wrapping the named decoder-layer classes (Llama, Qwen2, ... looked up in transformers)."""
    from lightning.pytorch.strategies import FSDPStrategy

    layers = set()
    for layer in auto_wrap_layers:
        for family in ("llama", "qwen2"):
            try:
                module = __import__(f"transformers.models.{family}.modeling_{family}", fromlist=[layer])
                layers.add(getattr(module, layer))
            except (ImportError, AttributeError):
                continue
    return FSDPStrategy(auto_wrap_policy=layers or None, use_orig_params=bool(use_orig_params),
                        sharding_strategy=sharding_strategy, **kwargs)
