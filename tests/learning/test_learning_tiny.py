"""The classic sanity checks of a training loop, on the tiny model through the real recipe: SFT
overfits a handful of examples (loss near 0, every one ranked first), and the trained adapter is what
the evaluator scores (its ranking differs from the untrained model's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napo_lab.eval import LLMPredictor
from napo_lab.metrics.ranking import ranks
from napo_lab.recipe import build
from napo_lab.recipe.stages import Job, sft_adapter
from napo_lab.recipe.validate import validate
from tests.conftest import TINY, compose_cfg

N_EXAMPLES, STEPS = 4, 200
# One batch of 4 examples, the fixed template, 200 steps. The tiny random model's frozen LM head
# (initialised at std 0.02) behind its final RMSNorm bounds every logit gap below ~1, so LoRA on the
# layers alone cannot make it confident: the sanity check trains the head as well (PEFT modules_to_save).
OVERFIT = [*TINY, "loss=sft", f"sft.train_limit={N_EXAMPLES}", f"sft.batch_size={N_EXAMPLES}", f"sft.epochs={STEPS}",
           "sft.lr=5e-3", "sft.warmup_ratio=0", "sft.scheduler=constant", "model.lora.r=32",
           "model.lora.lora_alpha=64", "+model.lora.modules_to_save=[lm_head]", "dataset.random_template=false",
           "checkpoint.every_n_steps=0", "trainer.gradient_clip_val=null"]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("overfit")
    cfg = compose_cfg(OVERFIT, out, cache_dir / "overfit")
    validate(cfg)
    prepared = build.data(cfg)
    llm, tokenizer = build.model(cfg)
    job = Job(cfg, prepared, llm, tokenizer, out)
    _, reused = sft_adapter(job)
    assert not reused
    dm = build.datamodule(cfg, prepared, tokenizer, "sft")
    ds = dm.train_dataset
    rows = pd.DataFrame({"user": ds.rows["user"], "history": ds.rows["history"], "target": ds.rows["target"],
                         "candidates": [ds.candidates(i) for i in range(len(ds))]})
    predictor = LLMPredictor(llm, tokenizer, dm, "ranking", build.layout(cfg, llm), 4)
    return cfg, llm, job, rows, predictor


def _target_ranks(predictor, rows) -> np.ndarray:
    table = rows[["user", "target", "candidates"]].copy()
    predictor.predict(rows, table, "train")
    scores = np.stack(table["scores"].to_numpy())
    cands = np.stack([np.asarray(c) for c in rows["candidates"]])
    return ranks(scores, np.argmax(cands == rows["target"].to_numpy()[:, None], axis=1))


def test_sft_overfits_a_handful_of_examples(overfit):
    cfg, _, job, rows, predictor = overfit
    losses = [r["train/loss"] for r in job.history.rows if "train/loss" in r]
    assert len(rows) == N_EXAMPLES and len(losses) == STEPS
    assert losses[0] > 1.0 and losses[-1] < 0.05, (losses[0], losses[-1])
    assert _target_ranks(predictor, rows).tolist() == [1] * N_EXAMPLES


def test_the_trained_adapter_is_what_the_evaluator_ranks_with(overfit):
    """The same evaluator with the adapter switched off (the untrained model) ranks differently."""
    _, llm, _, rows, predictor = overfit
    trained = _target_ranks(predictor, rows)
    with llm.disable_adapter():
        untrained = _target_ranks(predictor, rows)
    assert (untrained != trained).any() and untrained.mean() > trained.mean()
