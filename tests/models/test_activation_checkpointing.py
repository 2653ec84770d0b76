"""Activation checkpointing (``<stage>.activation_checkpointing``; docs/performance.md "Memory"): the
decoder recomputes its layers' activations in the backward pass instead of keeping them. The recomputation
runs the same kernels on the same inputs, so the loss and every LoRA gradient are bit-identical, under bf16
autocast as the job runs SmolLM2 and in fp32; the layers really run twice; the setting is switched off after
its stage; it changes no cache key; and a bad value is refused before anything loads."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from peft import LoraConfig

from napo_lab.models.llm import apply_lora, load_tiny_random
from napo_lab.models.logprobs import causal_lm, choose_layout, completion_and_prompt_logps
from napo_lab.recipe import build
from tests.conftest import TINY, compose_cfg


def _model(dtype: str):
    base, tok = load_tiny_random(hidden_size=48, intermediate_size=96, num_layers=4, dtype=dtype)
    model = apply_lora(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # at peft's zero init lora_A gets no gradient and the check proves less
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model, tok


def _loss_and_grads(model, tok, autocast: bool, every: int | None):
    prompts = [tok.encode("user likes a then b then c"), tok.encode("x y z w")]
    completions = [[tok.encode(" d"), tok.encode(" e f"), tok.encode(" g")], [tok.encode(" z"), tok.encode(" q")]]
    targets = [[2, 3, 4], [1, 2]]
    model.zero_grad(set_to_none=True)
    model.train()
    with build.activation_checkpointing(model, every), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast, cache_enabled=False):
        logps, _, hist = completion_and_prompt_logps(model, prompts, completions, tok.pad_token_id,
                                                     "shared_prefix", targets)
        loss = -(logps.sum() * 0.7 + hist.sum())
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("dtype", "autocast"), [("bfloat16", True), ("float32", False)])
@pytest.mark.parametrize("every", [1, 2])
def test_checkpointed_step_is_bit_identical(dtype, autocast, every):
    model, tok = _model(dtype)
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    loss_plain, grads_plain = _loss_and_grads(model, tok, autocast, None)
    loss_ck, grads_ck = _loss_and_grads(model, tok, autocast, every)
    assert torch.equal(loss_plain, loss_ck)
    assert grads_plain.keys() == grads_ck.keys() == set(lora) and lora
    assert all(torch.equal(grads_plain[n], grads_ck[n]) for n in grads_plain)
    assert all(float(g.abs().max()) > 0 for g in grads_plain.values())  # every adapter learns: a real check


def test_layers_run_again_in_backward_and_the_setting_ends_with_its_block(monkeypatch):
    from transformers.models.llama import modeling_llama

    model, tok = _model("float32")
    layers = causal_lm(model).model.layers
    index = {id(layer.mlp): i for i, layer in enumerate(layers)}
    calls = [0] * len(layers)
    forward = modeling_llama.LlamaMLP.forward

    def counting(self, x):  # the MLP's forward itself: module hooks do not run in torch's recompute
        calls[index[id(self)]] += 1
        return forward(self, x)

    monkeypatch.setattr(modeling_llama.LlamaMLP, "forward", counting)

    def counts(every):
        calls[:] = [0] * len(layers)
        _loss_and_grads(model, tok, False, every)
        return list(calls)

    assert counts(None) == [1, 1, 1, 1]
    assert counts(1) == [2, 2, 2, 2]  # each layer's forward again in the backward pass
    assert counts(2) == [2, 1, 2, 1]  # every second layer, from the first
    assert not causal_lm(model).is_activation_checkpointing  # off again after the stage's block
    assert counts(None) == [1, 1, 1, 1]
    with torch.no_grad(), build.activation_checkpointing(model, 1):  # evaluation-style passes: no recompute
        calls[:] = [0] * len(layers)
        model(input_ids=torch.tensor([tok.encode("a b c")]))
    assert calls == [1, 1, 1, 1]


def test_layouts_under_checkpointing():
    model, _ = _model("float32")
    assert choose_layout("shared_prefix", model, checkpointing=True) == "shared_prefix"
    assert choose_layout("prefix_cache", model, checkpointing=True) == "duplicate"  # the KV cache is dropped
    assert choose_layout("prefix_cache", model, checkpointing=False) == "prefix_cache"


def test_setting_reuses_caches_and_bad_values_are_refused(tmp_path):
    from napo_lab.recipe import keys
    from napo_lab.recipe.validate import validate

    class Prepared:  # sft_key reads only the prepared data's directory name
        root = tmp_path / "synthetic"

    off = ["sft.activation_checkpointing=null", "pref.activation_checkpointing=null"]
    plain = compose_cfg([*TINY, *off], tmp_path / "a", tmp_path / "c")
    ck = compose_cfg([*TINY, "sft.activation_checkpointing=1", "pref.activation_checkpointing=2"],
                     tmp_path / "a", tmp_path / "c")
    assert keys.sft_key(plain, Prepared) == keys.sft_key(ck, Prepared)
    loss_cfg = OmegaConf.create({"_target_": "napo_lab.losses.napo.NAPOLoss"})
    assert keys.checkpoint_identity(plain, "pref", Prepared, loss_cfg) == \
        keys.checkpoint_identity(ck, "pref", Prepared, loss_cfg)
    assert build.checkpointed_stages(ck) == ["sft", "pref"] and build.checkpointed_stages(plain) == []
    validate(ck)
    default = compose_cfg(TINY, tmp_path / "a", tmp_path / "c")  # the default: NAPO's stage recomputes
    assert build.checkpointed_stages(default) == ["pref"]
    assert build.checkpointed_stages(compose_cfg([*TINY, "loss=sft"], tmp_path / "a", tmp_path / "c")) == []
    for bad in ("pref.activation_checkpointing=0", "sft.activation_checkpointing=yes"):
        with pytest.raises(Exception, match="activation_checkpointing") as err:
            validate(compose_cfg([*TINY, bad], tmp_path / "b", tmp_path / "c"))
        assert "Traceback" not in str(err.value)


def test_real_pipeline_trains_identically_with_checkpointing(tmp_path):
    """The real job (Hydra, Lightning Trainer, SFT then NAPO, tiny model): the same losses step by step
    and the same test predictions with activation checkpointing on in both stages as without."""
    import pandas as pd

    from napo_lab.run import execute

    out = {}
    for name, extra in (("plain", ["pref.activation_checkpointing=null"]),
                        ("ck", ["sft.activation_checkpointing=1", "pref.activation_checkpointing=1"])):
        run = tmp_path / name
        execute(compose_cfg([*TINY, "loss=napo", "eval.protocol=ranking", *extra], run, tmp_path / f"cache_{name}"))
        curve = pd.read_csv(run / "train_metrics.csv")
        out[name] = (curve, pd.read_parquet(run / "predictions_test.parquet"))
    (curve_a, pred_a), (curve_b, pred_b) = out["plain"], out["ck"]
    for stage in ("sft", "pref"):
        a = curve_a[curve_a["stage"] == stage]["train/loss"].dropna().to_numpy()
        b = curve_b[curve_b["stage"] == stage]["train/loss"].dropna().to_numpy()
        assert len(a) == len(b) >= 2, stage
        assert (a == b).all(), stage
    pd.testing.assert_frame_equal(pred_a, pred_b)


def test_an_adapter_saved_with_the_retired_model_flag_still_evaluates(tmp_path):
    """Adapters saved before this setting existed carry ``model.gradient_checkpointing`` in their
    napo_lab_config.yaml; evaluate adopts that model group, and the whole config must still validate."""
    import yaml

    from napo_lab.evaluate import adopt_adapter_config
    from napo_lab.models.adapters import RUN_CONFIG
    from napo_lab.recipe.validate import validate

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    model = OmegaConf.to_container(compose_cfg(TINY, tmp_path / "a", tmp_path / "c").model)
    (adapter / RUN_CONFIG).write_text(yaml.safe_dump({"model": {**model, "gradient_checkpointing": False}}))
    cfg = compose_cfg([*TINY, f"+adapter={adapter}"], tmp_path / "a", tmp_path / "c")
    assert adopt_adapter_config(cfg, []) == ["model"]
    assert "gradient_checkpointing" not in cfg.model and cfg.model.name == model["name"]
    validate(cfg)


def test_a_model_that_cannot_recompute_is_refused_naming_the_setting(tmp_path, monkeypatch):
    from transformers.models.llama import modeling_llama

    from napo_lab.errors import UserError

    monkeypatch.setattr(modeling_llama.LlamaPreTrainedModel, "supports_gradient_checkpointing", False)
    cfg = compose_cfg(TINY, tmp_path / "a", tmp_path / "c")  # the default: pref recomputes
    with pytest.raises(UserError, match=r"LlamaForCausalLM cannot recompute activations: set "
                                        r"pref.activation_checkpointing=null$"):
        build.model(cfg)
    build.model(compose_cfg([*TINY, "pref.activation_checkpointing=null"], tmp_path / "a", tmp_path / "c"))
