"""The reference log-prob cache: hits after a store, misses on a new template, a changed reference
adapter invalidates it, cached values equal recomputed ones, concurrent writers do not corrupt it,
and fit_stage reads it back in a later run."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf
from peft import LoraConfig

from napo_lab.lit.module import RecLitModule
from napo_lab.losses.sdpo import SDPOLoss
from napo_lab.models.adapters import attach_reference, save_adapter
from napo_lab.models.llm import apply_lora, load_tiny_random
from napo_lab.models.ref_cache import RefLogpCache
from napo_lab.recipe import build
from napo_lab.recipe.build import reference_cache as reference_cache_for
from napo_lab.recipe.stages import Job, fit_stage
from tests.conftest import TINY, compose_cfg

ROOT = Path(__file__).resolve().parents[2]


def _batch(prompts, completions):
    width = max(len(c) for c in completions)
    item_ids = torch.full((len(prompts), width), -1, dtype=torch.long)
    for b, comps in enumerate(completions):
        item_ids[b, : len(comps)] = torch.arange(len(comps)) + 1
    return {"prompt_ids": prompts, "completion_ids": completions, "item_ids": item_ids, "mask": item_ids >= 0}


def test_hit_after_store_and_miss_on_a_new_template(tmp_path):
    cache = RefLogpCache(tmp_path, "k")
    batch = _batch([[5, 6, 7], [8, 9]], [[[1, 2], [3]], [[4]]])
    assert cache.lookup(batch) is None
    ref = torch.tensor([[-1.5, -2.25], [-0.75, 0.0]])
    cache.store(batch, ref)
    assert torch.equal(cache.lookup(batch), ref)
    # a fresh instance (another epoch / run / job) reads it from disk
    again = RefLogpCache(tmp_path, "k")
    assert torch.equal(again.lookup(batch), ref) and len(again) == 3
    # the same completions under another template (other prompt ids): a miss
    assert again.lookup(_batch([[5, 6, 70], [8, 9]], [[[1, 2], [3]], [[4]]])) is None
    # one new negative in an otherwise cached batch: a miss (the whole batch is recomputed)
    assert again.lookup(_batch([[5, 6, 7], [8, 9]], [[[1, 2], [3]], [[4], [11]]])) is None
    # another key is another directory
    assert RefLogpCache(tmp_path, "other").lookup(batch) is None


def test_a_changed_reference_adapter_invalidates_the_cache(tmp_path):
    cfg = compose_cfg(TINY, tmp_path / "out", tmp_path / "cache")
    adapter = tmp_path / "sft"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    prepared = SimpleNamespace(root=tmp_path / "prepared" / "synthetic-abc")
    first = reference_cache_for(cfg, adapter, prepared)
    assert first is not None and first.dir.parent == Path(cfg.paths.cache_dir) / "ref_logps"
    batch = _batch([[5, 6, 7]], [[[1, 2], [3]]])
    first.store(batch, torch.tensor([[-1.0, -2.0]]))
    assert reference_cache_for(cfg, adapter, prepared).lookup(batch) is not None
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")
    second = reference_cache_for(cfg, adapter, prepared)
    assert second.dir != first.dir and second.lookup(batch) is None
    OmegaConf.set_struct(cfg, False)
    cfg.ref_cache = {"enabled": False}
    assert reference_cache_for(cfg, adapter, prepared) is None


def test_cached_reference_equals_the_recomputed_one(tmp_path):
    model, tok = load_tiny_random(dtype="float32")
    # LoRA dropout on: the reference must still be a fixed function (computed in eval mode)
    model = apply_lora(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    save_adapter(model, tmp_path / "sft")
    attach_reference(model, tmp_path / "sft")
    cache = RefLogpCache(tmp_path / "ref", "key")
    module = RecLitModule(model, SDPOLoss(), tok.pad_token_id, {}, "shared_prefix", ref_cache=cache)
    module.train()
    ids = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    batch = _batch([ids("history: a, b, c. Answer:"), ids("other user, longer prompt here. Answer:")],
                   [[ids("x</s>"), ids("yy</s>"), ids("zzz</s>")], [ids("q</s>"), ids("rr</s>")]])
    first, _ = module._reference(batch, cross=False)
    assert cache.stored == 5 and cache.hits == 0
    cached, _ = module._reference(batch, cross=False)
    assert cache.hits == 1 and module.model.training
    module.ref_cache = None
    recomputed, _ = module._reference(batch, cross=False)
    assert torch.allclose(cached, recomputed, atol=1e-6, rtol=0)
    assert torch.allclose(first, recomputed, atol=1e-6, rtol=0)
    assert cached[1, 2] == 0 and bool((cached[:, :2] < 0).all())


WRITER = textwrap.dedent("""
    import sys, torch
    from napo_lab.models.ref_cache import RefLogpCache
    root, who = sys.argv[1], int(sys.argv[2])
    cache = RefLogpCache(root, "shared")
    for i in range(150):
        p = i if i % 2 == 0 else 1000 * (who + 1) + i   # even i: both writers write the same entry
        batch = {"prompt_ids": [[p, 1, 2]], "completion_ids": [[[7], [8, 9]]],
                 "item_ids": torch.tensor([[1, 2]]), "mask": torch.tensor([[True, True]])}
        cache.store(batch, torch.tensor([[-float(p), -float(p) - 0.5]]))
    print("ok")
""")


def test_two_processes_writing_at_once_do_not_corrupt_it(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)], cwd=str(ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    cache = RefLogpCache(tmp_path, "shared")
    db = sqlite3.connect(str(cache.path))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n_prompts = 75 + 2 * 75
    assert len(cache) == 2 * n_prompts
    for p in (0, 2, 1001, 2001, 1149, 2149):
        batch = {"prompt_ids": [[p, 1, 2]], "completion_ids": [[[7], [8, 9]]], "item_ids": torch.tensor([[1, 2]]),
                 "mask": torch.tensor([[True, True]])}
        assert torch.equal(cache.lookup(batch), torch.tensor([[-float(p), -float(p) - 0.5]]))


def test_fit_stage_reads_the_reference_cache_in_a_later_run(tmp_path, cache_dir):
    cfg = compose_cfg([*TINY, "loss=sdpo", "pref.train_limit=4", "pref.batch_size=2"], tmp_path / "out", cache_dir)
    prepared = build.data(cfg)
    model, tok = build.model(cfg)
    sft = tmp_path / "sft"
    save_adapter(model, sft)
    attach_reference(model, sft)
    stores, hits = [], []
    for run in range(2):  # two runs (or sweep jobs) over the same examples
        cache = reference_cache_for(cfg, sft, prepared)
        module = fit_stage(Job(cfg, prepared, model, tok, tmp_path / f"run{run}"), "pref", SDPOLoss(),
                           ref_cache=cache)
        assert module.ref_cache is cache
        stores.append(cache.stored)
        hits.append(cache.hits)
    assert stores[0] > 0 and hits[0] == 0
    assert stores[1] == 0 and hits[1] == 2  # 2 steps, every reference read from the cache
