"""``python -m napo_lab.run model=bprmf|lightgcn sampler=... dataset=movielens`` end to end on a small
generated ratings file (the real ML-100K file has the same format)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napo_lab.errors import ConfigError
from napo_lab.recipe.validate import validate
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    """RecBole's .inter format: 60 users who like (5) a window of 8 items of 40 and rate 4 others 2."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        liked = {(u + d) % 40 for d in range(8)}
        rows += [(u + 1, i + 1, 5, 0) for i in sorted(liked)]
        rows += [(u + 1, int(i) + 1, 2, 0) for i in rng.choice(sorted(set(range(40)) - liked), 4, replace=False)]
    path = tmp_path_factory.mktemp("ratings") / "toy.inter"
    df = pd.DataFrame(rows, columns=["user_id:token", "item_id:token", "rating:float", "timestamp:float"])
    df.to_csv(path, sep="\t", index=False)
    return path


def _cfg(tmp_path, ratings_file, model, sampler):
    small = ["dataset=movielens", f"dataset.files.ratings={ratings_file}", "dataset.ratings_protocol.item_filter=1",
             "dataset.ratings_protocol.user_filter=1", f"model={model}", f"sampler={sampler}", "model.dim=8",
             "model.lr=0.05", "model.batch_size=32", "model.max_epochs=8", "model.eval_every=2", "model.weight_decay=0",
             "eval.splits=[val,test]"]
    if sampler != "uniform":
        small += ["sampler.warmup_epochs=2", "sampler.refresh_every=4", "sampler.shapley.n_permutations=4",
                  "sampler.shapley.k=5"]
    return compose_cfg([*TINY, *small], tmp_path / "run", tmp_path / "cache")


@pytest.mark.parametrize("model, sampler, method", [("bprmf", "triplet_shapley", "bprmf+ts-resample"),
                                                    ("lightgcn", "triplet_shapley_weight", "lightgcn+ts-weight"),
                                                    ("bprmf", "uniform", "bprmf")])
def test_cf_run_end_to_end(tmp_path, ratings_file, model, sampler, method):
    execute(_cfg(tmp_path, ratings_file, model, sampler))
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    for role in ("val", "test"):
        for k in (5, 10, 20):
            assert 0.0 <= metrics[f"{role}/full/ndcg@{k}"] <= 1.0
        assert metrics[f"{role}/full/n"] == 60
    # ~30 items a user has not trained on, one of them held out: chance Recall@5 ~ 5/30 = 0.17; measured
    # 0.28 (bprmf+ts-resample), 0.42 (lightgcn+ts-weight), 0.37 (bprmf) after 8 small epochs.
    assert metrics["test/full/recall@5"] > 0.25
    assert json.loads((run / "run_info.json").read_text())["method"] == method
    df = pd.read_parquet(run / "predictions_test.parquet")
    assert len(df) == 60 and (df["target"] == -1).all() and (df["candidates"].str.len() == 0).all()
    assert (df["relevant"].str.len() == df["full_ranks"].str.len()).all()
    history = json.loads((run / "train_metrics.json").read_text())
    if sampler == "uniform":
        assert not history["valuations"] and "shapley/rounds" not in metrics
    else:
        assert [v["epoch"] for v in history["valuations"]] == [2, 6] and metrics["shapley/rounds"] == 2


def test_cf_config_problems_are_refused(tmp_path, ratings_file):
    cfg = compose_cfg([*TINY, "model=bprmf", "sampler=triplet_shapley", "sampler.use=both", "model.dim=0",
                       "sampler.shapley.control_variate=magic"], tmp_path / "run", tmp_path / "cache")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = str(err.value)
    for needle in ("sampler.use='both'", "model.dim=0", "sampler.shapley.control_variate='magic'",
                   "need explicit ratings"):
        assert needle in text, needle
