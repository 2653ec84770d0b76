"""The tiny LoRA model the layout tests share: a random fp32 Llama with LoRA on every projection and
non-zero LoRA B (so the adapter changes the scores)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from napo_lab.models.llm import apply_lora, load_tiny_random


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_tiny_random(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                  dtype="float32")
    model = apply_lora(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                         "down_proj"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:  # LoRA B starts at zero; make the adapter matter
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "lora_A" in n:  # peft draws A from torch's global generator: whatever ran before would decide it
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / p.shape[1] ** 0.5)
    model.eval()
    return model, tok
