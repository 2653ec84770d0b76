"""loss=recpo_paper in the pipeline: the preset's values, the config check, and a tiny end-to-end run on
RecPO's MovieLens data (real Hydra, Lightning, PEFT; the tiny random model)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from napo_lab.errors import ConfigError
from napo_lab.recipe import build
from napo_lab.recipe.validate import validate
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg, needs_data

SMALL = [o for o in TINY if not o.startswith("dataset=")] + [
    "dataset=movielens_recpo", "dataset.recpo.max_train_rows=64", "eval.references=false", "eval.protocol=both"]


def test_recpo_paper_preset_is_the_public_codes_defaults(tmp_path):
    cfg = compose_cfg(["loss=recpo_paper", "dataset=movielens_recpo"], tmp_path / "o", tmp_path / "c")
    validate(cfg)
    loss = build.loss(cfg)
    assert (loss.beta, loss.margin, loss.margin_mode, loss.use_reference) == (1.0, 2.0, "score_ratio", True)
    assert cfg.loss.num_negatives == 3 and cfg.loss.negatives.strategy == "in_prompt"  # RecPO's `both`
    r = cfg.dataset.recpo
    assert (r.decay, r.random_rating, r.random_step, r.min_chosen_rating, r.test_min_rating) == (0.5, 3.0, 10, 4, 4)
    assert (r.min_train_history, r.max_train_rows, cfg.dataset.n_candidates) == (5, 10000, 20)


@pytest.mark.parametrize("overrides", [["loss=recpo_paper"], ["loss=sdpo", "loss.negatives.strategy=recpo_random"]])
def test_recpo_scores_on_a_dataset_without_them_are_refused(tmp_path, overrides):
    cfg = compose_cfg([*TINY, *overrides], tmp_path / "o", tmp_path / "c")
    with pytest.raises(ConfigError, match="read RecPO's candidate scores, which dataset=synthetic does not prepare; "
                                          "use dataset=movielens_recpo or lastfm_recpo"):
        validate(cfg)


@needs_data
def test_recpo_paper_tiny_end_to_end(tmp_path, cache_dir):
    out = tmp_path / "run"
    cfg = compose_cfg([*SMALL, "loss=recpo_paper"], out, cache_dir)
    execute(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test/hr@1"] <= metrics["test/valid_ratio"] <= 1.0
    assert "test/rank/hr@1" in metrics
    hist = pd.read_csv(out / "train_metrics.csv")
    pref = hist[hist["stage"] == "pref"]
    assert len(pref) == 2  # 8 examples, batch 4
    # the chosen item is the top-scored candidate, so every s_w / s_k >= 1 and the mean margin >= lambda = 2
    assert (pref["train/recpo/margin"] >= 2.0).all() and pref["train/loss"].map(math.isfinite).all()
    pred = pd.read_parquet(out / "predictions_test.parquet")
    assert len(pred) == 8

    # what the module was given: the prepared scores of the chosen item and its negatives, a rated prompt
    prepared = build.data(cfg)
    model, tok = build.model(cfg)
    dm = build.datamodule(cfg, prepared, tok, "pref")
    batch = next(iter(dm.train_dataloader()))
    rows = dm.train_rows
    for b, i in enumerate(batch["example_index"].tolist()):
        score = dict(zip(rows.iloc[i]["candidates"].tolist(), rows.iloc[i]["candidate_scores"].tolist()))
        expect = [score[int(x)] for x in batch["item_ids"][b].tolist()]
        assert torch.allclose(batch["pref_scores"][b], torch.tensor(expect, dtype=torch.float32))
        assert batch["pref_scores"][b, 0] == max(score.values())
    text = tok.decode(batch["prompt_ids"][0])
    assert " | Rating: " in text and "(4 to 5)" in text
