"""The benchmark's FLOP counter against numbers worked out by hand on a tiny Llama-style config."""

from __future__ import annotations

import peft

from benchmarks.flops import Arch, Work, causal, flops, forward_flops, generation, packed
from napo_lab.models.llm import load_tiny_random

ALL = ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")
# hidden 32, 4 heads of 8 (32), 2 KV heads (16), MLP 64, 2 layers, vocab 100, LoRA r=4 on all seven
TINY = Arch(
    layers=2,
    hidden=32,
    heads=4,
    kv_heads=2,
    head_dim=8,
    intermediate=64,
    vocab=100,
    lora_r=4,
    lora_targets=ALL,
)


def test_weights_by_hand():
    # per layer: q 32*32=1024, k 32*16=512, v 512, o 1024, gate/up/down 32*64=2048 each -> 9216; x2 layers
    assert TINY.weights == 18432
    # LoRA per layer: q 4*(32+32)=256, k 4*(32+16)=192, v 192, o 256, gate/up/down 4*(32+64)=384 -> 2048
    assert TINY.lora_weights == 4096


def test_token_and_pair_counts_by_hand():
    # prompt of 3, completions of 2 and 1: prompt pairs 1+2+3=6; completion 1: (3+1)+(3+2)=9; completion 2: 3+1=4
    assert packed(3, [2, 1]) == Work(tokens=6, pairs=19, head=3)
    assert causal(2, past=5) == Work(2, 6 + 7, 0)
    # generation of 2 answer tokens after a prompt of 3: the prompt (6 pairs), one fed token seeing 4 keys
    assert generation(3, 2) == Work(tokens=4, pairs=10, head=2)


def test_flops_by_hand():
    w = packed(3, [2, 1])
    f = forward_flops(TINY, w)
    assert f == {
        "linear": 2 * 18432 * 6,  # 221184
        "lora": 2 * 4096 * 6,  # 49152
        "attention": 4 * 2 * 4 * 8 * 19,  # 4864
        "head": 2 * 32 * 100 * 3,
    }  # 19200
    assert flops(TINY, w) == 294400
    # backward (benchmarks/flops.py): input gradients of every matmul, weight gradients of LoRA only:
    # linear 221184 + 2 * lora 98304 + 2 * attention 9728 + head 19200 = 348416
    assert flops(TINY, w, train=True) == 294400 + 348416


def test_arch_of_the_tiny_model_matches_its_parameters():
    model, _ = load_tiny_random()
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=list(ALL), task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    arch = Arch.of(model)
    assert arch == Arch(2, 32, 4, 2, 8, 64, 259, 4, ALL)
    dense = sum(
        m.base_layer.weight.numel()
        for n, m in model.named_modules()
        if n.endswith(ALL) and hasattr(m, "base_layer")
    )
    adapters = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert (dense, adapters) == (arch.weights, arch.lora_weights)


def test_compute_dtype_counts_elements_not_tensors():
    """bf16 base weights with a frozen fp32 adapter of many small tensors (the benchmark's reference
    adapter): the matmul work is bf16."""
    import torch

    from benchmarks.tasks import compute_dtype

    model = torch.nn.Module()
    model.base = torch.nn.Parameter(torch.zeros(64, 64, dtype=torch.bfloat16), requires_grad=False)
    for i in range(5):
        model.register_parameter(f"ref{i}", torch.nn.Parameter(torch.zeros(4, 4), requires_grad=False))
    model.trainable = torch.nn.Parameter(torch.zeros(128, 128))  # trainable: not counted
    assert compute_dtype(model) == "bfloat16"
