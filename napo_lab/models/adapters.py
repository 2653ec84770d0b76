"""LoRA adapters on disk and the frozen reference adapter.

The reference of DPO-family losses is the SFT model. With LoRA, disabling the adapter would give the
BASE model, which is wrong once SFT trained that adapter, so the saved SFT adapter is loaded a second
time, frozen, under the name ``reference`` and switched in for the reference pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from napo_lab.errors import UserError

REFERENCE_ADAPTER = "reference"
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


class AdapterError(UserError, RuntimeError):
    """A saved adapter cannot be used; the message names its file."""


def save_adapter(model, path: Path, adapter: str = "default") -> None:
    """Write one adapter's weights + config atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".tmp"))
    try:
        model.save_pretrained(str(tmp), selected_adapters=[adapter])
        src = tmp if adapter == "default" else tmp / adapter
        stable_adapter_config(src)
        if path.exists():
            shutil.rmtree(path)
        os.replace(src, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stable_adapter_config(path: Path) -> None:
    """Rewrite ``adapter_config.json`` with its sets (``target_modules``, ...) sorted: PEFT writes them in
    set order, which varies between processes, so identical runs would differ byte for byte."""
    config = Path(path) / CONFIG
    if not config.is_file():
        return
    data = json.loads(config.read_text())
    for key, value in data.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            data[key] = sorted(value)
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_adapter_into(model, path: Path, adapter: str = "default") -> None:
    """Copy saved LoRA weights into an existing adapter slot (keeps it trainable)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: not a saved napo_lab adapter")
    try:
        state = load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - truncated, corrupt or not safetensors at all
        raise AdapterError(f"{weights} cannot be read ({type(err).__name__}: {str(err)[:120]}); it is corrupt or "
                           "not a LoRA adapter. Delete it (a cached SFT adapter is trained again) or point at "
                           "another adapter.") from None
    result = set_peft_model_state_dict(model, state, adapter_name=adapter)
    bad = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if bad:
        raise ValueError(f"{weights} does not fit this model (unexpected keys such as {bad[0]}); "
                         "it was trained with another model or LoRA config.")


def attach_reference(model, adapter_path: Path) -> None:
    """Load a saved adapter a second time, frozen, as the reference policy."""
    try:
        model.load_adapter(str(adapter_path), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    except Exception as err:  # noqa: BLE001 - a corrupt file is named, whatever PEFT raised
        raise AdapterError(f"the adapter in {adapter_path} cannot be loaded as the reference "
                           f"({type(err).__name__}: {str(err)[:120]}); delete it to train it again.") from None
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
