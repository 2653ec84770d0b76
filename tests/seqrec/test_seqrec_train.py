"""Training, caching and the run entry point on a tiny prepared dataset with a learnable pattern
(item i is followed by item i+1), written in the documented on-disk format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf

import napo_lab.models.seqrec.cache as cache_mod
from napo_lab.data.prepared import PreparedDataset, write_prepared
from napo_lab.models.seqrec import evaluate_split, load_or_train_seqrec, train_seqrec

N_ITEMS = 40
FAST = {  # small enough for a few seconds on 2 CPU cores
    "arch": "sasrec",
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 1,
    "dropout": 0.1,
    "max_len": 10,
    "lr": 0.01,
    "batch_size": 128,
    "max_epochs": 8,
    "patience": 3,
    "monitor": "hr@1",
    "seed": 3,
    "num_threads": 1,  # tiny models: one thread is as fast, and robust on a shared 2-core box
}


def _rows(rng: np.random.Generator, n: int, with_candidates: bool, user0: int) -> pd.DataFrame:
    rows = []
    for u in range(n):
        length = int(rng.integers(3, 11))
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
    root = tmp_path_factory.mktemp("prepared") / "synthetic-seqrec-0000"
    root.mkdir()
    rng = np.random.default_rng(0)
    splits = {
        "train": _rows(rng, 1500, False, 0),
        "val": _rows(rng, 200, True, 10_000),
        "test": _rows(rng, 200, True, 20_000),
    }
    items = pd.DataFrame(
        {"item_id": range(N_ITEMS), "title": [f"item {i}" for i in range(N_ITEMS)], "train_count": 1}
    )
    manifest = {
        "name": "synthetic-seqrec",
        "domain": "item",
        "splits": {k: len(v) for k, v in splits.items()},
        "counts": {"n_items": N_ITEMS},
        "default_val_split": "val",
        "default_test_split": "test",
    }
    write_prepared(root, items, splits, manifest)
    return PreparedDataset.load(root)


@pytest.fixture(scope="module")
def trained(prepared):
    return train_seqrec(prepared, FAST)


def test_sasrec_learns_transition_pattern(prepared, trained):
    model, info = trained
    _, metrics = evaluate_split(model.eval(), prepared.split("test"))
    assert metrics["hr@1"] >= 0.5, metrics  # chance is 1/20
    assert info["best_epoch"] >= 0 and info["best_val"]["hr@1"] >= 0.5


def test_sasrec_learns_synthetic_dataset(tmp_path):
    """The project's own `dataset=synthetic` (item chains, p_follow 0.9) through ensure_prepared."""
    from napo_lab.config.compose import group
    from napo_lab.prepare import ensure_prepared

    ds = PreparedDataset.load(ensure_prepared(group("dataset", "synthetic"), cache_dir=tmp_path))
    cfg = {**FAST, "batch_size": 64, "max_epochs": 25, "patience": 5}
    model = load_or_train_seqrec(ds, cfg, tmp_path)
    _, metrics = evaluate_split(model, ds.split(ds.manifest["default_test_split"]))
    assert metrics["hr@1"] >= 0.5, metrics


@pytest.mark.parametrize("arch", ["gru4rec", "caser"])
def test_other_archs_train(prepared, arch):
    cfg = {**FAST, "arch": arch, "max_epochs": 1, "n_h": 4, "n_v": 2}
    torch.manual_seed(0)
    model, info = train_seqrec(prepared, cfg)
    h = torch.tensor([[1, 2, 3, -1], [5, 6, 7, 8]])
    assert model.user_states(h).shape == (2, 32) and model.scores(h).shape == (2, N_ITEMS)
    assert info["epochs_run"] == 1 and np.isfinite(info["best_val"]["mrr"])


@pytest.mark.parametrize("loss", ["bpr", "sampled_softmax"])
def test_sampled_losses_train(prepared, loss):
    model, info = train_seqrec(prepared, {**FAST, "loss": loss, "num_negatives": 4, "max_epochs": 1})
    assert np.isfinite(info["best_val"]["hr@1"])


def test_training_is_deterministic(prepared):
    cfg = {**FAST, "max_epochs": 1}
    torch.manual_seed(123)
    rng_before, threads = torch.get_rng_state(), torch.get_num_threads()
    a, _ = train_seqrec(prepared, cfg)
    # Training leaves the caller's process state alone (a NAPO run must not depend on cache hits).
    assert torch.equal(torch.get_rng_state(), rng_before) and torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    b, _ = train_seqrec(prepared, cfg)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_cache_round_trip(prepared, tmp_path, monkeypatch):
    cfg = {**FAST, "max_epochs": 2}
    first = load_or_train_seqrec(prepared, cfg, tmp_path)
    assert first.train_info["from_cache"] is False
    assert not first.training and not any(p.requires_grad for p in first.parameters())
    assert (first.item_emb.weight[first.pad_id] == 0).all()  # padding stays the zero vector
    entries = [p for p in (tmp_path / "seqrec").iterdir() if p.is_dir()]  # one cache entry: a directory
    assert len(entries) == 1 and sorted(p.name for p in entries[0].iterdir()) == ["meta.json", "model.safetensors"]

    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(cache_mod, "train_seqrec", no_training)
    second = load_or_train_seqrec(prepared, OmegaConf.create(cfg), tmp_path)
    assert second.train_info["from_cache"] is True
    h = torch.tensor([[1, 2, 3, 4], [9, 10, -1, -1]])
    torch.testing.assert_close(first.scores(h), second.scores(h), rtol=0, atol=0)
    assert load_or_train_seqrec(prepared, cfg, tmp_path, freeze=False).training

    # A changed hyper-parameter is another cache entry: it must train.
    monkeypatch.undo()
    third = load_or_train_seqrec(prepared, {**cfg, "lr": 0.005}, tmp_path)
    assert third.train_info["from_cache"] is False

    # A cache entry whose stored config does not match is refused (retrained), not fatal;
    # so is a corrupt weights file.
    meta = next(
        p
        for p in (tmp_path / "seqrec").glob("*/meta.json")
        if json.loads(p.read_text())["key"]["model"]["lr"] == 0.01
    )
    stored = json.loads(meta.read_text())
    stored["key"]["model"]["hidden_size"] = 999
    meta.write_text(json.dumps(stored))
    assert load_or_train_seqrec(prepared, cfg, tmp_path).train_info["from_cache"] is False
    (meta.parent / "model.safetensors").write_bytes(b"not a safetensors file")
    assert load_or_train_seqrec(prepared, cfg, tmp_path).train_info["from_cache"] is False
    assert load_or_train_seqrec(prepared, cfg, tmp_path).train_info["from_cache"] is True


def test_sequential_model_job_writes_predictions_and_metrics(prepared, tmp_path):
    """model=sasrec through the recipe: the same evaluator, files and metric families as an LLM run."""
    from napo_lab.recipe.recipe import sequential_model_job
    from tests.conftest import compose_cfg

    fast = [f"model.{k}={v}" for k, v in FAST.items()] + ["model.max_epochs=2", "eval.splits=[val,test]"]
    cfg = compose_cfg(["model=sasrec", "dataset=synthetic", *fast], tmp_path / "run", tmp_path / "cache")
    metrics = sequential_model_job(cfg, prepared, tmp_path / "run")
    for role in ("val", "test"):
        for k in ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr"):
            assert 0.0 <= metrics[f"{role}/rank/{k}"] <= 1.0
        assert metrics[f"{role}/hr@1"] == metrics[f"{role}/rank/hr@1"] == metrics[f"{role}/hr@1_valid"]
        assert metrics[f"{role}/valid_ratio"] == 1.0
        for key in ("pop/avg_pop@1", "band/head/n", "rank/pop/avg_pop@5", "rank/band/mid/n"):
            assert f"{role}/{key}" in metrics
    assert any((tmp_path / "cache" / "seqrec").glob("*/model.safetensors"))

    table = pq.read_table(tmp_path / "run" / "predictions_test.parquet")
    assert table.schema.names == ["user", "target", "candidates", "generated", "scores", "scores_norm", "matched",
                                  "relevant", "full_ranks", "history", "history_titles", "target_title",
                                  "candidate_titles", "matched_title"]
    assert [str(t) for t in table.schema.types][:9] == ["int64", "int64", "list<element: int64>", "string",
                                                        "list<element: double>", "list<element: double>", "int64",
                                                        "list<element: int64>", "list<element: int64>"]
    df = table.to_pandas()
    test = prepared.split("test")
    assert len(df) == len(test) and (df["target"].to_numpy() == test["target"].to_numpy()).all()
    assert all(len(s) == 20 for s in df["scores"]) and (df["generated"] == "").all()
    hits = (df["matched"] == df["target"]).mean()
    assert hits == pytest.approx(metrics["test/hr@1"])
    # Full catalogue, from the same scores: the target's rank among all items is at least its rank among
    # the candidates, so a target first among all items is the answer.
    assert (df["relevant"].str[0] == df["target"]).all() and (df["full_ranks"].str.len() == 1).all()
    first = df["full_ranks"].str[0] == 1
    assert (df.loc[first, "matched"] == df.loc[first, "target"]).all()
    assert metrics["test/full/recall@10"] == pytest.approx((df["full_ranks"].str[0] <= 10).mean())
    # full-catalogue HR@10 of the interaction-volume study counts the same ranks
    assert metrics["test/full/hr@10"] == pytest.approx((df["full_ranks"].str[0] <= 10).mean())
    # Scores are the gathered full logits of the (cached, frozen) model.
    model = load_or_train_seqrec(prepared, cfg.model, tmp_path / "cache")
    row = df.iloc[0]
    full = model.scores(torch.tensor(np.array([test["history"].iloc[0]])))[0]
    np.testing.assert_allclose(
        row["scores"], full[torch.tensor(np.array(row["candidates"]))].double().numpy(), atol=1e-5
    )


def test_concurrent_callers_train_once(prepared, tmp_path, monkeypatch):
    """Two workers asking for the same model at once: one trains, the other waits on the file lock
    and loads the result."""
    import threading

    calls = []
    real = cache_mod.train_seqrec

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "train_seqrec", counting)
    cfg = {**FAST, "max_epochs": 1, "seed": 11}
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_train_seqrec(prepared, cfg, tmp_path)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(m.train_info["from_cache"] for m in results) == [False, True]
