"""Shared-prefix log-probs equal the duplicated layout and a naive full forward (values and LoRA
gradients, fp32, within 1e-5), for prompts of different lengths and uneven completion counts; NAPO's
cross layout (every pool item under every prompt); only completion positions reach the LM head;
choose_layout falls back to duplicate where shared-prefix cannot work, and says so."""

from __future__ import annotations

import logging

import pytest
import torch

from napo_lab.lit.module import RecLitModule
from napo_lab.models.logprobs import (
    _as_attention_mask,
    block_causal,
    causal_lm,
    choose_layout,
    completion_logps,
)

TOL = 1e-5


def _data(vocab: int):
    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    prompts = [ids(7), ids(23), ids(13)]  # different lengths
    completions = [[ids(3), ids(5), ids(1), ids(4)], [ids(2)], [ids(6), ids(2), ids(3)]]  # 4, 1, 3 completions
    return prompts, completions


def _lora_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _close_grads(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Within TOL of the gradient's own scale: each layout sums the same per-token terms in another order,
    and in fp32 that rounding grows with the terms' size (LoRA gradients here reach ~10, where the layouts
    differ by up to ~8e-6 across random LoRA initialisations)."""
    return float((a - b).abs().max()) <= TOL * max(1.0, float(b.abs().max()))


def _run(model, prompts, completions, pad, layout, weights):
    model.zero_grad(set_to_none=True)
    logps, lengths = completion_logps(model, prompts, completions, pad, layout)
    (logps * weights).sum().backward()
    return logps.detach(), lengths, _lora_grads(model)


def _naive(model, prompt, completion) -> torch.Tensor:
    """Full-vocabulary log-softmax over the whole (prompt + completion) sequence of the HF model."""
    ids = torch.tensor([list(prompt) + list(completion)])
    logits = causal_lm(model)(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    targets = ids[0, 1:]
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked[len(prompt) - 1:].sum()


@pytest.mark.parametrize("layout, attn", [("shared_prefix", "sdpa"), ("shared_prefix", "eager"),
                                          ("prefix_cache", "sdpa")])
def test_shared_prefix_equals_duplicate_values_and_gradients(tiny, layout, attn):
    model, tok = tiny
    prompts, completions = _data(len(tok))
    weights = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    config = causal_lm(model).config
    before = config._attn_implementation
    config._attn_implementation = attn
    try:
        lp_s, len_s, g_s = _run(model, prompts, completions, tok.pad_token_id, layout, weights)
    finally:
        config._attn_implementation = before
    lp_d, len_d, g_d = _run(model, prompts, completions, tok.pad_token_id, "duplicate", weights)
    assert lp_s.shape == (3, 4) and torch.equal(len_s, len_d)
    assert torch.equal(len_s[1], torch.tensor([2, 0, 0, 0]))  # missing slots: length 0, log-prob 0
    assert torch.allclose(lp_s, lp_d, atol=TOL, rtol=0)
    assert g_s.keys() == g_d.keys() and len(g_s) > 0
    assert any(float(g.abs().max()) > 1e-4 for g in g_s.values())
    for name in g_s:
        assert _close_grads(g_s[name], g_d[name]), name


@pytest.mark.parametrize("layout", ["shared_prefix", "prefix_cache"])
def test_both_layouts_equal_a_naive_full_forward(tiny, layout):
    model, tok = tiny
    prompts, completions = _data(len(tok))
    with torch.no_grad():
        lp_s, _ = completion_logps(model, prompts, completions, tok.pad_token_id, layout)
        lp_d, _ = completion_logps(model, prompts, completions, tok.pad_token_id, "duplicate")
        for b, comps in enumerate(completions):
            for j, c in enumerate(comps):
                ref = _naive(model, prompts[b], c)
                assert abs(float(lp_s[b, j] - ref)) < TOL
                assert abs(float(lp_d[b, j] - ref)) < TOL


def test_napo_cross_layout_every_pool_item_under_every_prompt(tiny):
    model, tok = tiny
    prompts, completions = _data(len(tok))
    width = max(len(c) for c in completions)
    item_ids = torch.full((3, width), -1, dtype=torch.long)
    for b, comps in enumerate(completions):
        item_ids[b, : len(comps)] = torch.arange(len(comps)) + 10 * b
    batch = {"prompt_ids": prompts, "completion_ids": completions, "item_ids": item_ids, "mask": item_ids >= 0}
    out = {}
    for layout in ("shared_prefix", "duplicate"):
        module = RecLitModule(model, torch.nn.Identity(), tok.pad_token_id, {}, layout)
        model.zero_grad(set_to_none=True)
        own, _, (cross, cross_len) = module._score(batch, cross=True)
        assert cross.shape == (3, 3, width)
        (cross * batch["mask"].unsqueeze(0)).sum().backward()
        out[layout] = (own.detach(), cross.detach(), _lora_grads(model))
    own_s, cross_s, g_s = out["shared_prefix"]
    own_d, cross_d, g_d = out["duplicate"]
    valid = batch["mask"].unsqueeze(0).expand(3, -1, -1)
    assert torch.allclose(cross_s[valid], cross_d[valid], atol=TOL, rtol=0)
    for name in g_s:
        assert _close_grads(g_s[name], g_d[name]), name
    with torch.no_grad():
        for i in range(3):  # prompt of user i
            for j, comps in enumerate(completions):  # user j's completions
                for k, c in enumerate(comps):
                    assert abs(float(cross_s[i, j, k] - _naive(model, prompts[i], c))) < TOL
    assert torch.allclose(own_s, torch.stack([cross_s[i, i] for i in range(3)]))


@pytest.mark.parametrize("layout", ["shared_prefix", "duplicate"])
def test_only_completion_positions_reach_the_lm_head(tiny, layout):
    model, tok = tiny
    prompts, completions = _data(len(tok))
    rows = []
    head = causal_lm(model).get_output_embeddings()
    handle = head.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[:-1].numel()))
    try:
        with torch.no_grad():
            completion_logps(model, prompts, completions, tok.pad_token_id, layout)
    finally:
        handle.remove()
    flat = [c for cs in completions for c in cs]
    # one row per completion token: no prompt tokens and no padding of shorter completions
    assert sum(rows) == sum(len(c) for c in flat) < len(flat) * max(len(c) for c in flat)


@pytest.mark.parametrize("layout", ["shared_prefix", "prefix_cache", "duplicate"])
@pytest.mark.parametrize("amp", [False, True])
def test_the_lm_head_on_real_positions_only_gives_the_same_numbers(tiny, layout, amp, monkeypatch):
    """Completions of unequal length: log-probs and LoRA gradients bit for bit those of the head run on
    every padded position with the padding zeroed by the mask (the computation before the change), in
    fp32 and under bf16 autocast."""
    import napo_lab.models.logprobs as lp

    model, tok = tiny
    prompts, completions = _data(len(tok))
    weights = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))

    def padded(head, hidden, targets, mask):
        return lp._token_logps_each(head, hidden, targets, mask).sum(-1)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            return _run(model, prompts, completions, tok.pad_token_id, layout, weights)

    lp_new, len_new, g_new = run()
    monkeypatch.setattr(lp, "_token_logps", padded)
    lp_old, len_old, g_old = run()
    assert torch.equal(len_new, len_old) and int((len_new == 0).sum()) == 4  # the empty slots stay 0
    assert torch.equal(lp_new, lp_old)
    assert g_new.keys() == g_old.keys() and all(torch.equal(g_new[n], g_old[n]) for n in g_new)


def test_choose_layout_falls_back_and_says_why(tiny, caplog):
    model, _ = tiny
    assert choose_layout("shared_prefix", model) == "shared_prefix"
    assert choose_layout("duplicate", model) == "duplicate"
    with caplog.at_level(logging.INFO, logger="napo_lab.models.logprobs"):
        assert choose_layout("shared_prefix", model, "fsdp") == "duplicate"
    assert "fsdp" in caplog.text
    caplog.clear()
    # Activation checkpointing drops the KV cache prefix_cache continues from; shared_prefix needs none.
    with caplog.at_level(logging.INFO, logger="napo_lab.models.logprobs"):
        assert choose_layout("prefix_cache", model, checkpointing=True) == "duplicate"
    assert "activation checkpointing" in caplog.text
    assert choose_layout("shared_prefix", model, checkpointing=True) == "shared_prefix"
    lm = causal_lm(model)
    lm.activation_checkpointing_enable()
    try:
        assert choose_layout("prefix_cache", model) == "duplicate"  # already on in the model itself
        assert choose_layout("shared_prefix", model) == "shared_prefix"
    finally:
        lm.activation_checkpointing_disable()
    assert choose_layout("prefix_cache", model) == "prefix_cache"


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_rows_of_one_completion_run_unmasked_causal_attention_with_the_same_numbers(tiny, attn):
    """SFT's shape (one prompt and one completion per row, rows of unequal length padded on the right)
    reaches the decoder without a mask, so SDPA takes its causal kernel; the log-probs and LoRA gradients
    equal those under the block mask bit for bit (padding comes after every real token, so causal
    attention never lets a real token see it). With two completions in a row the block mask is kept."""
    model, tok = tiny
    prompts, completions = _data(len(tok))
    one = [[c[0]] for c in completions]
    weights = torch.randn(3, 1, generator=torch.Generator().manual_seed(3))
    lm = causal_lm(model)
    seen: list = []
    force = {"on": False}

    def spy(mod, args, kwargs):
        if force["on"] and kwargs["attention_mask"] is None:  # the block mask the rows would otherwise get
            pos = kwargs["position_ids"]
            real = pos == torch.arange(pos.shape[1]).unsqueeze(0)  # positions restart at 0 in the padding
            kwargs["attention_mask"] = _as_attention_mask(
                block_causal(torch.where(real, 0, -1)).unsqueeze(1), lm, lm.get_output_embeddings().weight.dtype)
        seen.append(kwargs.get("attention_mask"))
        return args, kwargs

    before = lm.config._attn_implementation
    lm.config._attn_implementation = attn
    handle = lm.get_decoder().register_forward_pre_hook(spy, with_kwargs=True)
    try:
        lp_plain, _, g_plain = _run(model, prompts, one, tok.pad_token_id, "shared_prefix", weights)
        assert seen[-1] is None
        force["on"] = True
        lp_mask, _, g_mask = _run(model, prompts, one, tok.pad_token_id, "shared_prefix", weights)
        assert seen[-1] is not None and seen[-1].shape[-2:] == (max(len(p) + len(c[0]) for p, c in zip(prompts, one)),) * 2
        force["on"] = False
        completion_logps(model, prompts, [c[:2] for c in completions], tok.pad_token_id, "shared_prefix")
        assert seen[-1] is not None  # a second completion needs the block mask
    finally:
        handle.remove()
        lm.config._attn_implementation = before
    assert torch.equal(lp_plain, lp_mask)
    assert g_plain.keys() == g_mask.keys() and all(torch.equal(g_plain[n], g_mask[n]) for n in g_plain)
    lp_d, _, g_d = _run(model, prompts, one, tok.pad_token_id, "duplicate", weights)
    assert torch.allclose(lp_plain, lp_d, atol=TOL, rtol=0)
    assert all(_close_grads(g_plain[n], g_d[n]) for n in g_plain)
