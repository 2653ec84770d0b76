"""SASRec trained with each sampler of the negative-sampling study on the synthetic dataset (item chains),
through the cache and the run entry point, with full-catalogue and interaction-volume metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from napo_lab.data.prepared import PreparedDataset
from napo_lab.models.seqrec import load_or_train_seqrec
from napo_lab.models.seqrec.config import SeqRecConfig, with_neg_sampler

CONF = Path(__file__).resolve().parents[2] / "conf"
FAST = {"arch": "sasrec", "hidden_size": 32, "num_layers": 1, "num_heads": 1, "dropout": 0.1, "max_len": 10,
        "lr": 0.01, "batch_size": 64, "max_epochs": 12, "patience": 4, "monitor": "full/hr@10", "seed": 3,
        "num_threads": 1}
SMALL = {"rns": {"num_samples": 8}, "pns": {"num_samples": 8}, "bns": {"num_samples": 8},
         "mns": {"num_samples": 4, "num_uniform": 4}, "ans": {"num_samples": 16, "top_k": 4},
         "amns": {"num_samples": 4, "num_uniform": 12, "top_k": 4}}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> PreparedDataset:
    from napo_lab.config.compose import group
    from napo_lab.prepare import ensure_prepared

    root = ensure_prepared(group("dataset", "synthetic"), cache_dir=tmp_path_factory.mktemp("cache"))
    return PreparedDataset.load(root)


def sampler_cfg(name: str, **extra) -> dict:
    group = OmegaConf.to_container(OmegaConf.load(CONF / "neg_sampler" / f"{name}.yaml"))
    return with_neg_sampler(FAST, {**group, **SMALL[name], **extra})


@pytest.mark.parametrize("name", ["rns", "pns", "bns", "mns", "ans", "amns"])
def test_every_sampler_trains_sasrec(synthetic, tmp_path, name):
    model = load_or_train_seqrec(synthetic, sampler_cfg(name), tmp_path)
    best = model.train_info["best_val"]
    assert np.isfinite(best["full/hr@10"])
    # item chains (p_follow 0.9, 64 items): every sampler learns them far above chance (10 / 64)
    assert best["full/hr@10"] >= 0.45, (name, best)


def test_static_after_epochs_and_pool_targets_train(synthetic, tmp_path):
    cfg = sampler_cfg("amns", static_after_epochs=2, pool="targets")
    cfg["max_epochs"] = 4
    model = load_or_train_seqrec(synthetic, cfg, tmp_path)
    assert np.isfinite(model.train_info["best_val"]["full/hr@10"])


def test_sampler_enters_the_cache_key():
    a = SeqRecConfig.from_cfg(sampler_cfg("rns")).training_key()
    b = SeqRecConfig.from_cfg(sampler_cfg("pns")).training_key()
    plain = SeqRecConfig.from_cfg(FAST).training_key()
    assert a != b and "negatives" not in plain and a["loss"] == "bce"


def test_bad_sampler_settings_are_refused():
    with pytest.raises(ValueError, match="bce needs a neg_sampler"):
        SeqRecConfig.from_cfg({**FAST, "loss": "bce"})
    with pytest.raises(ValueError, match="ce is the full softmax"):
        SeqRecConfig.from_cfg({**FAST, "negatives": {"sampler": "rns"}})
    with pytest.raises(ValueError, match="top_k"):
        SeqRecConfig.from_cfg(sampler_cfg("ans", top_k=999))


def test_run_with_a_sampler_reports_full_catalogue_and_volume_cohorts(tmp_path):
    """`python -m napo_lab.run model=sasrec neg_sampler=amns dataset=synthetic`: the recipe's groups, the
    evaluator's full-catalogue and interaction-volume metrics next to the sampled ones."""
    import json

    import pandas as pd

    from napo_lab.run import execute
    from tests.conftest import compose_cfg

    small = [f"neg_sampler.{k}={v}" for k, v in SMALL["amns"].items()]
    out = tmp_path / "run"
    execute(compose_cfg(["model=sasrec", "dataset=synthetic", "neg_sampler=amns", *small, "logger=none",
                         "model.max_epochs=2", "model.hidden_size=16", "model.monitor=full/hr@10",
                         "eval.splits=[val,test]"], out, tmp_path / "cache"))
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run_info.json").read_text())
    assert info["method"] == "sasrec+amns"
    for role in ("val", "test"):
        for key in ("full/hr@10", "full/ndcg@10", "full/volume/head/hr@10", "full/volume/tail/ndcg@10",
                    "full/volume/balance_ndcg@10", "full/volume/balance_hr@10", "rank/hr@1"):
            assert 0.0 <= metrics[f"{role}/{key}"] <= 1.0, key
        n = sum(metrics[f"{role}/full/volume/{c}/n"] for c in ("head", "mid", "tail"))
        assert n == metrics[f"{role}/full/n"]
    assert metrics["volume_cohorts/head/interaction_share"] < 1 / 3 + 1e-9
    sizes = [metrics[f"volume_cohorts/{c}/items"] for c in ("head", "mid", "tail")]
    assert sum(sizes) == 64 and sizes[0] <= sizes[2]
    pred = pd.read_parquet(out / "predictions_test.parquet")
    hits = (pred["full_ranks"].str[0] <= 10).mean()
    assert hits == pytest.approx(metrics["test/full/hr@10"])
