"""LoRA inputs under autocast (napo_lab.models.adapters.lora_inputs_as_given; docs/performance.md):
skipping peft's bf16 -> fp32 input cast gives bit-identical log-probs and gradients, and the cast stays on
where it is needed (no autocast)."""

from __future__ import annotations

import torch
from peft import LoraConfig

from napo_lab.models.adapters import lora_inputs_as_given
from napo_lab.models.llm import apply_lora, load_tiny_random
from napo_lab.models.logprobs import completion_and_prompt_logps


def _model():
    base, tok = load_tiny_random(hidden_size=48, intermediate_size=96, num_layers=2, dtype="bfloat16")
    model = apply_lora(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # at peft's zero init the LoRA branch adds nothing and proves nothing
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model, tok


def _loss_and_grads(model, tok, given: bool):
    prompts = [tok.encode("user likes a then b then c"), tok.encode("x y")]
    completions = [[tok.encode(" d"), tok.encode(" e f")], [tok.encode(" z")]]
    targets = [[2, 3, 4], [1]]
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        if given:
            with lora_inputs_as_given(model):
                logps, _, hist = completion_and_prompt_logps(model, prompts, completions, tok.pad_token_id,
                                                             prompt_targets=targets)
        else:
            logps, _, hist = completion_and_prompt_logps(model, prompts, completions, tok.pad_token_id,
                                                         prompt_targets=targets)
    loss = -(logps.sum() + hist.sum())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_skipping_the_input_cast_under_autocast_is_bit_identical():
    model, tok = _model()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)  # fp32 adapters on a bf16 base, as SmolLM2 runs
    loss_cast, grads_cast = _loss_and_grads(model, tok, given=False)
    loss_given, grads_given = _loss_and_grads(model, tok, given=True)
    assert torch.equal(loss_cast, loss_given)
    assert grads_cast.keys() == grads_given.keys() and len(grads_cast) == len(lora)
    assert all(torch.equal(grads_cast[n], grads_given[n]) for n in grads_cast)
    assert any(g.abs().max() > 0 for n, g in grads_cast.items() if "lora_A" in n)


def test_the_cast_is_off_only_inside_autocast_and_comes_back():
    model, tok = _model()
    layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert layers and all(m.cast_input_dtype_enabled for m in layers)
    with lora_inputs_as_given(model):  # no autocast: bf16 inputs must still be cast for the fp32 LoRA weights
        assert all(m.cast_input_dtype_enabled for m in layers)
        ids = torch.tensor([tok.encode("abc")])
        model(input_ids=ids)  # would fail on bf16 x fp32 without the cast
    with torch.autocast("cpu", dtype=torch.bfloat16), lora_inputs_as_given(model):
        assert not any(m.cast_input_dtype_enabled for m in layers)
    assert all(m.cast_input_dtype_enabled for m in layers)
