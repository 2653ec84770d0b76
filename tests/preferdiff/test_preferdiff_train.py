"""PreferDiff trains end to end on a tiny prepared dataset (item i is followed by item i+1), is cached
like any sequential model, and runs through the recipe (``model=preferdiff``) with the one evaluator."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from napo_lab.data.prepared import PreparedDataset, write_prepared
from napo_lab.eval import SeqRecPredictor
from napo_lab.metrics.table import metrics_from_predictions
from napo_lab.models.preferdiff import PreferDiff, train_preferdiff
from napo_lab.models.seqrec import load_or_train_seqrec

N_ITEMS = 30
TINY = {"hidden_size": 16, "timesteps": 50, "ddim_step": 10, "lr": 0.01, "batch_size": 64, "max_epochs": 6,
        "patience": 6, "seed": 1, "num_threads": 1, "guidance_w": 1.0}


def _rows(rng: np.random.Generator, n: int, with_candidates: bool, user0: int) -> pd.DataFrame:
    rows = []
    for u in range(n):
        length = int(rng.integers(3, 8))
        start = int(rng.integers(0, N_ITEMS))
        seq = [(start + j) % N_ITEMS for j in range(length + 1)]
        row = {"user": user0 + u, "history": seq[:-1], "target": seq[-1]}
        if with_candidates:
            pool = [i for i in range(N_ITEMS) if i not in seq]
            cands = [*rng.choice(pool, size=19, replace=False).tolist(), seq[-1]]
            rng.shuffle(cands)
            row["candidates"] = cands
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("prepared") / "chain-preferdiff-0000"
    root.mkdir()
    rng = np.random.default_rng(0)
    splits = {"train": _rows(rng, 600, False, 0), "val": _rows(rng, 80, True, 10_000),
              "test": _rows(rng, 80, True, 20_000)}
    items = pd.DataFrame({"item_id": range(N_ITEMS), "title": [f"item {i}" for i in range(N_ITEMS)],
                          "train_count": 1})
    manifest = {"name": "chain-preferdiff", "domain": "item", "splits": {k: len(v) for k, v in splits.items()},
                "counts": {"n_items": N_ITEMS}, "default_val_split": "val", "default_test_split": "test"}
    write_prepared(root, items, splits, manifest)
    return PreparedDataset.load(root)


def _evaluate(model, df: pd.DataFrame) -> dict:
    table = pd.DataFrame({"user": df["user"], "target": df["target"], "candidates": df["candidates"]})
    table["generated"] = ""
    SeqRecPredictor(model).predict(df, table, "test")
    return metrics_from_predictions(table, [f"item {i}" for i in range(N_ITEMS)], answers="top1", full_ks=(5, 10))


def test_tiny_training_learns_the_chain_and_is_reproducible(prepared):
    model, info = train_preferdiff(prepared, TINY)
    assert info["best_epoch"] >= 0 and set(info["best_val"]) >= {"full/recall@5", "rank/hr@1"}
    metrics = _evaluate(model, prepared.split("test"))
    assert metrics["full/n"] == 80
    assert metrics["full/recall@10"] > 0.6  # a random ranking gets 10/30; measured here: 0.95
    assert 0.0 <= metrics["full/ndcg@5"] <= metrics["full/recall@5"] <= metrics["full/recall@10"] <= 1.0
    # Same seed, same data -> the same weights and the same (seeded) sampled scores.
    again, _ = train_preferdiff(prepared, TINY)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert _evaluate(again, prepared.split("test")) == metrics


def test_cached_like_a_sequential_model(prepared, tmp_path):
    cfg = {**TINY, "arch": "preferdiff", "max_epochs": 1}
    first = load_or_train_seqrec(prepared, cfg, tmp_path)
    second = load_or_train_seqrec(prepared, cfg, tmp_path)
    assert isinstance(second, PreferDiff) and second.train_info["from_cache"] and not first.train_info["from_cache"]
    meta = json.loads(next((tmp_path / "seqrec").glob("preferdiff-*/meta.json")).read_text())
    assert meta["key"]["model"]["gamma"] == 5.0 and meta["key"]["model"]["hidden_size"] == 16
    history = torch.tensor([[1, 2, 3]])
    assert torch.equal(first.scores(history), second.scores(history))  # seeded sampling noise


def test_model_preferdiff_through_the_recipe(tmp_path):
    """``python -m napo_lab.run model=preferdiff dataset=synthetic``: the LLM/SASRec metric families plus
    the full-catalogue ones, the same predictions file."""
    from napo_lab.run import execute
    from tests.conftest import TINY as TINY_RUN
    from tests.conftest import compose_cfg

    fast = ["model=preferdiff", "model.hidden_size=16", "model.timesteps=50", "model.ddim_step=10",
            "model.max_epochs=2", "model.lr=0.01", "model.batch_size=64", "eval.splits=[val,test]"]
    execute(compose_cfg([*TINY_RUN, *fast], tmp_path / "run", tmp_path / "cache"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for role in ("val", "test"):
        for key in ("hr@1", "rank/ndcg@10", "full/recall@5", "full/ndcg@10", "full/recall@20", "pop/avg_pop@1"):
            assert f"{role}/{key}" in metrics, key
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["method"] == "preferdiff"
    df = pd.read_parquet(tmp_path / "run" / "predictions_test.parquet")
    assert (df["full_ranks"].str.len() == 1).all() and (df["scores"].str.len() == 20).all()
