"""Attention precision (napo_lab.models.attention, config ``attention_dtype``): on CPU the default runs
SDPA on fp32 copies of the bf16 queries, keys and values (faster there, closer to exact) and rounds the
output back; ``native`` leaves transformers' path untouched."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from napo_lab.errors import UserError
from napo_lab.models import attention
from napo_lab.models.attention import set_attention_dtype
from napo_lab.models.llm import load_tiny_random


def _model():
    torch.manual_seed(0)
    base, tok = load_tiny_random(hidden_size=64, intermediate_size=96, num_layers=2, dtype="bfloat16")
    return base.eval(), tok


def _qkv(gqa: int = 2):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 7, 16, generator=g).bfloat16()  # (batch, heads, tokens, head dim)
    k, v = (torch.randn(2, 4 // gqa, 7, 16, generator=g).bfloat16() for _ in range(2))
    keep = torch.ones(7, 7, dtype=torch.bool).tril()
    keep[:, 0] = True  # a non-causal entry: the mask must be honoured, not replaced by is_causal
    return q, k, v, keep[None, None].expand(2, 1, 7, 7)


def _attention_module(model):
    return next(m for m in model.modules() if type(m).__name__.endswith("Attention"))


@pytest.mark.parametrize("autocast", [False, True])
def test_cpu_attention_runs_on_fp32_copies_and_rounds_back(autocast: bool):
    model, _ = _model()
    assert set_attention_dtype(model, "auto") == 2  # one per decoder layer
    module = _attention_module(model)
    module.num_key_value_groups = 2
    q, k, v, mask = _qkv()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):  # autocast must not cast them back
        out, _ = attention._sdpa(module, q, k, v, mask, scaling=0.25, dropout=0.0)
    k2, v2 = (x.repeat_interleave(2, dim=1) for x in (k, v))
    want = F.scaled_dot_product_attention(q.float(), k2.float(), v2.float(), attn_mask=mask, scale=0.25)
    assert out.dtype == torch.bfloat16 and torch.equal(out, want.transpose(1, 2).bfloat16())
    native = F.scaled_dot_product_attention(q, k2, v2, attn_mask=mask, scale=0.25).transpose(1, 2)
    assert not torch.equal(out, native)  # the bf16 kernel rounds differently: the fp32 path really ran


def test_native_and_unmarked_modules_take_transformers_path_unchanged():
    model, _ = _model()
    module = _attention_module(model)
    module.num_key_value_groups = 2
    q, k, v, mask = _qkv()
    attention._install()
    plain, _ = attention._installed["sdpa"](module, q, k, v, mask, scaling=0.25)
    assert torch.equal(attention._sdpa(module, q, k, v, mask, scaling=0.25)[0], plain)  # not marked
    set_attention_dtype(model, "native")
    assert torch.equal(attention._sdpa(module, q, k, v, mask, scaling=0.25)[0], plain)
    set_attention_dtype(model, "float32")
    assert not torch.equal(attention._sdpa(module, q, k, v, mask, scaling=0.25)[0], plain)
    fp32 = (q.float(), k.float(), v.float())
    assert torch.equal(attention._sdpa(module, *fp32, mask, scaling=0.25)[0], attention._installed["sdpa"](
        module, *fp32, mask, scaling=0.25)[0])  # fp32 inputs: nothing to upcast


def test_the_whole_model_follows_the_setting():
    model, tok = _model()
    ids = torch.tensor([tok.encode("user likes a then b then c")])
    logits = {}
    for mode in ("native", "auto", "float32"):
        set_attention_dtype(model, mode)
        with torch.no_grad():
            logits[mode] = model(input_ids=ids).logits
    assert torch.equal(logits["auto"], logits["float32"])  # on CPU auto is fp32
    assert not torch.equal(logits["auto"], logits["native"])
    assert (logits["auto"].float() - logits["native"].float()).abs().max() < 0.1  # the same model, rounded otherwise


def test_an_unknown_setting_is_a_user_error():
    model, _ = _model()
    with pytest.raises(UserError, match=re.escape("attention_dtype='fp16' is not one of auto | float32 | native")):
        set_attention_dtype(model, "fp16")
