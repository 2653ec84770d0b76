"""LoRA adapters on disk and the frozen reference adapter.

The reference of DPO-family losses is the SFT model. With LoRA, disabling the adapter would give the
BASE model, which is wrong once SFT trained that adapter, so the saved SFT adapter is loaded a second
time, frozen, under the name ``reference`` and switched in for the reference pass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

REFERENCE_ADAPTER = "reference"
WEIGHTS = "adapter_model.safetensors"


def save_adapter(model, path: Path, adapter: str = "default") -> None:
    """Write one adapter's weights + config atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".tmp"))
    try:
        model.save_pretrained(str(tmp), selected_adapters=[adapter])
        src = tmp if adapter == "default" else tmp / adapter
        if path.exists():
            shutil.rmtree(path)
        os.replace(src, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_adapter_into(model, path: Path, adapter: str = "default") -> None:
    """Copy saved LoRA weights into an existing adapter slot (keeps it trainable)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: not a saved napo_lab adapter")
    result = set_peft_model_state_dict(model, load_file(str(weights)), adapter_name=adapter)
    bad = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if bad:
        raise ValueError(f"{weights} does not fit this model (unexpected keys such as {bad[0]}); "
                         "it was trained with another model or LoRA config.")


def attach_reference(model, adapter_path: Path) -> None:
    """Load a saved adapter a second time, frozen, as the reference policy."""
    model.load_adapter(str(adapter_path), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    model.set_adapter("default")
    for n, p in model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in n:
            p.requires_grad_(False)


@contextlib.contextmanager
def active_adapter(model, name: str):
    """Run with another (frozen) LoRA adapter active, then give the trainable one back."""
    previous = model.active_adapter
    model.set_adapter(name, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(previous)
