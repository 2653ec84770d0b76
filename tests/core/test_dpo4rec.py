"""DPO4Rec: pair selection and the re-ranking metrics by hand, the lists, the reasoning cache, and a tiny
end-to-end run of experiment=dpo4rec_small on the tiny random model (real Hydra, PEFT, Lightning)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from napo_lab.data.rerank import rerank_lists
from napo_lab.metrics.rerank import map_at_k, ndcg_at_k
from napo_lab.recipe.dpo4rec import best_worst
from napo_lab.run import execute
from tests.conftest import compose_cfg, needs_data

TINY_DPO4REC = ["experiment=dpo4rec_small", "model=tiny_random", "dpo4rec.lists.n_users=12", "dpo4rec.max_new_tokens=8",
                "dpo4rec.rounds=1", "dpo4rec.reranker.epochs=20", "logger=none", "trainer.enable_progress_bar=false"]


def test_best_and_worst_reasoning_form_the_pair():
    assert best_worst([0.5, 1.0, 0.2, 1.0]) == (1, 2)  # first best, first worst
    assert best_worst([0.3, 0.3, 0.3]) is None  # no preference
    assert best_worst([0.0, 0.6131471927654584]) == (1, 0)
    assert best_worst([float("nan"), 1.0]) is None


def test_ndcg_and_map_at_5_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [0, 1, 0, 1, 0, 1]  # relevant at ranks 2, 4 (and 6, outside the top 5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(scores, labels, 5) == pytest.approx(dcg / idcg, abs=1e-12)
    # KAR divides by the relevant items found in the top K (2 here), not by all relevant ones (3)
    assert map_at_k(scores, labels, 5) == pytest.approx((1 / 2 + 2 / 4) / 2, abs=1e-12)
    assert ndcg_at_k([0.1, 0.9], [1, 0], 5) == pytest.approx(1 / math.log2(3), abs=1e-12)
    assert ndcg_at_k([1, 2], [0, 0], 5) == 0.0 and map_at_k([1, 2], [0, 0], 5) == 0.0  # KAR: zeros, counted
    assert map_at_k([3, 2, 1], [1, 1, 0], 5) == 1.0 and ndcg_at_k([3, 2, 1], [1, 1, 0], 5) == 1.0


def test_lists_train_before_test_labels_by_threshold():
    # one user, 10 + 2 x 2 ratings in time order; items 100.. are never rated, so they fill the lists
    items = list(range(14))
    ratings = pd.DataFrame({"user": 0, "item": items, "rating": [3] * 10 + [5, 2, 4, 1], "timestamp": range(14)})
    cfg = {"n_users": 5, "n_next": 2, "list_size": 5, "history": 10, "threshold": 3, "seed": 0}
    row = rerank_lists(ratings, 200, cfg).iloc[0]
    assert row["history"] == list(range(10)) and row["history_ratings"] == [3] * 10
    train = dict(zip(row["train_items"], row["train_labels"]))
    test = dict(zip(row["test_items"], row["test_labels"]))
    assert train[10] == 1 and train[11] == 0 and test[12] == 1 and test[13] == 0
    assert len(train) == len(test) == 5 and all(i >= 14 and lab == 0 for i, lab in train.items() if i not in (10, 11))


@needs_data
def test_dpo4rec_tiny_end_to_end_and_reasoning_cache(tmp_path, cache_dir):
    out = tmp_path / "run"
    execute(compose_cfg(TINY_DPO4REC, out, cache_dir))
    m = json.loads((out / "metrics.json").read_text())
    for variant in ("no_reasoning", "round0", "round1"):
        for metric in ("ndcg@5", "map@5"):
            key = f"test/dpo4rec/{variant}/{metric}"
            assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"] and 0 <= m[key] <= 1
    assert m["test/dpo4rec/round1/ndcg@5_vs_no_reasoning_ci_low"] <= m["test/dpo4rec/round1/ndcg@5_vs_no_reasoning"]
    assert m["dpo4rec/users"] == 12 and m["dpo4rec/round1/pairs"] >= 1 and m["dpo4rec/round1/steps"] >= 1
    assert m["dpo4rec/round1/reward_gap"] > 0  # best minus worst NDCG@5, over the pairs
    lists = pd.read_parquet(out / "dpo4rec_lists.parquet")
    assert len(lists) == 12 and (lists["no_reasoning/ndcg@5"] == 0).sum() >= m["dpo4rec/lists_without_relevant_item"]
    assert m["test/dpo4rec/no_reasoning/ndcg@5"] == pytest.approx(lists["no_reasoning/ndcg@5"].mean(), abs=1e-12)
    texts = pd.read_parquet(out / "reasoning_round0.parquet")["texts"]
    assert len(texts) == 12 and all(len(t) == 4 for t in texts)
    # the round-0 reasoning of a rerun comes from the cache, and is the same text
    again = tmp_path / "again"
    execute(compose_cfg(TINY_DPO4REC, again, cache_dir))
    m2 = json.loads((again / "metrics.json").read_text())
    assert m["dpo4rec/round0/reasoning_from_cache"] == 0.0 and m2["dpo4rec/round0/reasoning_from_cache"] == 1.0
    assert pd.read_parquet(again / "reasoning_round0.parquet")["texts"].map(list).tolist() == texts.map(list).tolist()
    assert m2["test/dpo4rec/round0/ndcg@5"] == m["test/dpo4rec/round0/ndcg@5"]


def test_bad_dpo4rec_settings_are_listed_before_anything_loads(tmp_path):
    from napo_lab.errors import ConfigError
    from napo_lab.recipe.validate import validate

    cfg = compose_cfg([*TINY_DPO4REC, "dpo4rec.n_samples=1", "dpo4rec.beta=0", "+dpo4rec.lists.users=3"],
                      tmp_path / "o", tmp_path / "c")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = str(err.value)
    assert "dpo4rec.n_samples=1: must be >= 2" in text and "dpo4rec.beta=0: must be > 0" in text
    assert "dpo4rec.lists: unknown option(s) users" in text
