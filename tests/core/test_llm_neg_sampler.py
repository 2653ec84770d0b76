"""The study's samplers in the LLM preference stage, end to end with the tiny random Llama: the
neg_sampler group replaces loss.negatives, adaptive pools are picked by the policy or by SASRec."""

from __future__ import annotations

import json

import pytest
import torch

from napo_lab.errors import ConfigError
from napo_lab.recipe import build
from napo_lab.recipe.stages import Job, fit_stage
from napo_lab.recipe.validate import validate
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg

SASREC_FAST = ["seqrec.max_epochs=1", "seqrec.hidden_size=16", "seqrec.num_layers=1"]


@pytest.mark.slow  # tiny-LLM preference runs: `make test-slow`
@pytest.mark.parametrize("overrides", [
    ["neg_sampler=bns", "neg_sampler.num_samples=3", "neg_sampler.pool=targets"],
    ["neg_sampler=amns", "neg_sampler.num_samples=2", "neg_sampler.num_uniform=4", "neg_sampler.top_k=3",
     "neg_sampler.scorer=seqrec", *SASREC_FAST],
])
def test_sdpo_trains_with_a_study_sampler(tmp_path, cache_dir, overrides):
    out = tmp_path / "run"
    execute(compose_cfg([*TINY, "loss=sdpo", *overrides], out, cache_dir))
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "ok" and "test/hr@1" in metrics
    assert info["method"] == "sdpo+" + overrides[0].split("=")[1]


@pytest.mark.slow
def test_policy_picks_the_adaptive_top_k(tmp_path, cache_dir):
    """scorer=self: the batch carries the pool; the module keeps the k completions the policy scores highest.
    (A reference-free loss, so the stage can run without the SFT adapter attached as reference.)"""
    cfg = compose_cfg([*TINY, "loss=dmpo", "loss.objective.use_reference=false", "neg_sampler=ans",
                       "neg_sampler.num_samples=5",
                       "neg_sampler.top_k=3", "neg_sampler.pool=targets"], tmp_path / "run", cache_dir)
    validate(cfg)
    (tmp_path / "run").mkdir()
    prepared = build.data(cfg)
    model, tok = build.model(cfg)
    module = fit_stage(Job(cfg, prepared, model, tok, tmp_path / "run"), "pref", build.loss(cfg))
    batch = next(iter(module.datamodule.train_dataloader()))
    assert batch["adaptive_top_k"] == 3 and batch["item_ids"].shape[1] <= 6
    picked = module.pick_adaptive(batch)
    model.eval()
    with torch.no_grad():
        scores, _, _ = module._score(batch, cross=False)
    for b in range(len(batch["prompt_ids"])):
        pool = [(scores[b, j].item(), int(batch["item_ids"][b, j])) for j in range(1, batch["item_ids"].shape[1])
                if batch["mask"][b, j]]
        best = sorted(pool, reverse=True)[:3]
        assert picked["item_ids"][b, 1:][picked["mask"][b, 1:]].tolist() == [i for _, i in best]


def test_k_must_match_the_sampler():
    cfg = compose_cfg([*TINY, "loss=sdpo", "neg_sampler=rns"], "/tmp/unused", "/tmp/unused")
    with pytest.raises(ConfigError, match="loss.num_negatives=3: neg_sampler=rns gives 50 negatives"):
        validate(cfg)
