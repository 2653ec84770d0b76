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


class AdapterError(UserError, RuntimeError, ValueError):
    """A saved adapter cannot be used here (foreign, corrupt or for another model); the message names its file."""


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


def _read_weights(path: Path) -> dict:
    """The tensors of a saved adapter; a missing or unreadable file is an AdapterError naming it."""
    from safetensors.torch import load_file

    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise AdapterError(f"{weights} is missing: {path} is not a saved LoRA adapter (it needs {CONFIG} and "
                           f"{WEIGHTS}). Point adapter= at <run dir>/adapter or a run dir.")
    try:
        return load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - truncated, corrupt or not safetensors at all
        raise AdapterError(f"{weights} cannot be read ({type(err).__name__}: {str(err)[:120]}); it is corrupt or "
                           "not a LoRA adapter. Delete it (a cached SFT adapter is trained again) or point at "
                           "another adapter.") from None


_MISFIT = ("it was trained on another base model or LoRA config (see adapter_config.json's "
           "base_model_name_or_path and r); evaluate it with that model=..., or retrain.")


def _misfit(weights: Path, err: Exception) -> AdapterError:
    """One paragraph for an adapter whose tensors do not fit the model (instead of one line per tensor)."""
    lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln]
    if lines:
        return AdapterError(f"{weights} does not fit this model: {len(lines)} tensor(s) differ in shape, "
                            f"e.g. {lines[0]}; {_MISFIT}")
    return AdapterError(f"{weights} does not fit this model ({str(err).splitlines()[0][:200]}); {_MISFIT}")


def _check_keys(model, state: dict, weights: Path, adapter: str) -> None:
    """Every tensor of the file found a place in the model (PEFT skips unknown keys silently)."""
    from peft import get_peft_model_state_dict

    known = set(get_peft_model_state_dict(model, adapter_name=adapter, save_embedding_layers=False))
    bad = sorted(k for k in state if k not in known)
    if bad:
        raise AdapterError(f"{weights} does not fit this model (unexpected keys such as {bad[0]}); {_MISFIT}")


def load_adapter(base_model, path: Path, adapter: str = "default"):
    """A saved adapter on a base model through PEFT's own loader (``PeftModel.from_pretrained``, what a
    user of PEFT calls), for evaluation: frozen, in inference mode. A foreign or corrupt adapter is one
    AdapterError naming its file and the mismatch."""
    from peft import PeftModel

    path = Path(path)
    weights = path / WEIGHTS
    state = _read_weights(path)
    if not (path / CONFIG).is_file():
        raise AdapterError(f"{path / CONFIG} is missing: PEFT needs it beside {WEIGHTS}.")
    try:
        model = PeftModel.from_pretrained(base_model, str(path), adapter_name=adapter, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as err:  # size mismatch; target modules not in this model
        raise _misfit(weights, err) from None
    _check_keys(model, state, weights, adapter)
    return model


def load_adapter_into(model, path: Path, adapter: str = "default") -> None:
    """Copy saved LoRA weights into an existing, trainable adapter slot (the cached SFT adapter a
    preference stage starts from; evaluation loads through ``load_adapter``)."""
    from peft import set_peft_model_state_dict

    weights = Path(path) / WEIGHTS
    state = _read_weights(Path(path))
    try:
        set_peft_model_state_dict(model, state, adapter_name=adapter)
    except RuntimeError as err:
        raise _misfit(weights, err) from None
    _check_keys(model, state, weights, adapter)


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


# ----------------------------------------------------------------------------- self-describing adapters
RUN_CONFIG = "napo_lab_config.yaml"  # the resolved, redacted config of the run that trained the adapter
CARD = "README.md"


def base_model_id(model_cfg: dict) -> str:
    """What adapter_config.json's ``base_model_name_or_path`` says: a hub id / directory when the model
    has one, else ``napo_lab:<model name>`` (embedded GGUF package, tiny random model)."""
    loader = model_cfg.get("loader") or {}
    return str(loader.get("name_or_path") or f"napo_lab:{model_cfg.get('name')}")


def describe_adapter(path: Path, run_config: dict, metrics: dict[str, float] | None = None) -> None:
    """Make a saved adapter self-describing: the run's config beside it, the base model in
    adapter_config.json, and a model card (README.md) with model, LoRA, data, method and metrics."""
    import json

    import yaml

    path = Path(path)
    model_cfg, dataset = run_config.get("model") or {}, run_config.get("dataset") or {}
    (path / RUN_CONFIG).write_text(yaml.safe_dump(run_config, sort_keys=False))
    cfg_file = path / "adapter_config.json"
    adapter_cfg = json.loads(cfg_file.read_text())
    adapter_cfg["base_model_name_or_path"] = base_model_id(model_cfg)
    cfg_file.write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True))
    lora = {k: v for k, v in (model_cfg.get("lora") or {}).items() if k != "_target_"}
    loss = run_config.get("loss") or {}
    lines = [
        "---", "library_name: peft", f"base_model: {base_model_id(model_cfg)}", "tags: [napo_lab, lora, recommendation]",
        "---", "", f"# {loss.get('name', 'adapter')} LoRA adapter for {model_cfg.get('name')} on {dataset.get('name')}", "",
        "A LoRA adapter trained by napo_lab (LLM-based sequential recommendation). The run's whole resolved config is",
        f"`{RUN_CONFIG}`; `python -m napo_lab.evaluate adapter=<this dir>` evaluates it and",
        "`python -m napo_lab.recommend adapter=<this dir> history=...` recommends with it (base model and data are",
        "read from that file).", "",
        f"- base model: `{base_model_id(model_cfg)}` (napo_lab model config `{model_cfg.get('name')}`)",
        f"- dataset: `{dataset.get('name')}`", f"- objective: `{loss.get('name')}` (stage `{loss.get('stage')}`)",
        f"- seed: {run_config.get('seed')}",
        "- LoRA: " + ", ".join(f"{k}={v}" for k, v in lora.items()), "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        from napo_lab.metrics.registry import HEADLINE

        lines += [f"| `{role}/{name}` | {metrics[f'{role}/{name}']:.4f} |" for role in ("val", "test")
                  for name in HEADLINE if f"{role}/{name}" in metrics]
        lines.append("")
    (path / CARD).write_text("\n".join(lines))


#: Keys an older napo_lab saved beside its adapters that no longer exist: dropped on reading, so the adapter
#: still evaluates (``model.gradient_checkpointing`` became ``<stage>.activation_checkpointing``, a training
#: setting that evaluation does not use).
RETIRED_KEYS = {"model": ("gradient_checkpointing",)}


def adapter_run_config(path: Path) -> dict | None:
    """The config saved beside an adapter by describe_adapter (keys retired since dropped), or None (an
    adapter from elsewhere)."""
    import yaml

    file = Path(path) / RUN_CONFIG
    if not file.is_file():
        return None
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise AdapterError(f"{file} is not readable YAML ({str(err).splitlines()[0]}); it is written by napo_lab "
                           "beside every adapter it saves: retrain, or pass model=... dataset=... yourself.") from None
    if not isinstance(data, dict):
        return None
    for group, retired in RETIRED_KEYS.items():
        if isinstance(data.get(group), dict):
            for key in retired:
                data[group].pop(key, None)
    return data


@contextlib.contextmanager
def lora_inputs_as_given(model):
    """Under autocast, let the LoRA layers take their input in the dtype it comes in (docs/performance.md,
    "Memory", second pass: "LoRA inputs as given under autocast").

    peft casts a LoRA layer's input to its weights' dtype (bf16 activations -> fp32 copies for the fp32
    LoRA weights), and autocast then casts that copy back to bf16 for the matmul: a conversion each way
    per layer and, in training, a second bf16 copy of every projection's input kept for the backward pass.
    bf16 -> fp32 -> bf16 is exact, so skipping both gives bit-identical log-probs and gradients. Outside
    autocast (full precision, or bf16 weights without mixed precision) the cast is needed and stays on.
    """
    import torch

    try:
        device = next(model.parameters()).device.type
    except StopIteration:
        device = "cpu"
    if not torch.is_autocast_enabled(device):
        yield
        return
    layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    saved = [m.cast_input_dtype_enabled for m in layers]
    for m in layers:
        m.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for m, value in zip(layers, saved):
            m.cast_input_dtype_enabled = value
