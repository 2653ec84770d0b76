"""The DataModule: prompts, negatives, and batches that depend only on (seed, epoch, example)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napo_lab.data.datamodule import RecDataModule
from napo_lab.data.samplers import NegativeSampler
from napo_lab.models.llm import build_byte_tokenizer
from napo_lab.recipe import build
from tests.conftest import TINY, compose_cfg, needs_data


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, cache_dir):
    cfg = compose_cfg([*TINY], tmp_path_factory.mktemp("dm"), cache_dir)
    return cfg, build.data(cfg)


def _dm(cfg, prepared, workers=0, k=3, strategy="in_prompt", weights=None, seed=0):
    ds = dict(cfg.dataset)
    ds["train_limit"] = 24
    return RecDataModule(prepared, build_byte_tokenizer(), ds, k, {"strategy": strategy, "weights": weights},
                         batch_size=4, eval_batch_size=4, num_workers=workers, seed=seed, use_chat_template=False)


def _epoch(dm, epoch):
    dm.index_sampler.set_epoch(epoch)
    return list(dm.train_dataloader())


def test_identical_batches_with_0_and_2_workers(synthetic):
    cfg, prepared = synthetic
    for epoch in (0, 1):
        a, b = _epoch(_dm(cfg, prepared, 0), epoch), _epoch(_dm(cfg, prepared, 2), epoch)
        assert len(a) == len(b) == 6
        for x, y in zip(a, b):
            assert x["prompt_ids"] == y["prompt_ids"] and x["completion_ids"] == y["completion_ids"]
            assert torch.equal(x["item_ids"], y["item_ids"])


def test_epochs_differ_and_seed_matters(synthetic):
    cfg, prepared = synthetic
    dm = _dm(cfg, prepared)
    e0, e1 = _epoch(dm, 0), _epoch(dm, 1)
    assert [b["example_index"].tolist() for b in e0] != [b["example_index"].tolist() for b in e1]
    other = _epoch(_dm(cfg, prepared, seed=5), 0)
    assert [b["item_ids"].tolist() for b in e0] != [b["item_ids"].tolist() for b in other]


def test_batch_layout_positive_first_and_valid_negatives(synthetic):
    cfg, prepared = synthetic
    dm = _dm(cfg, prepared)
    batch = _epoch(dm, 0)[0]
    rows = dm.train_dataset.rows
    for b, idx in enumerate(batch["example_index"].tolist()):
        row = rows.iloc[idx]
        items = batch["item_ids"][b].tolist()
        assert items[0] == int(row["target"])
        cands = dm.train_dataset.candidates(idx)
        assert set(items[1:]) <= set(cands) - {int(row["target"])}
        assert not set(items[1:]) & set(int(h) for h in row["history"])
        assert batch["completion_ids"][b][0] == dm.builder.title_ids[items[0]]
    assert batch["mask"].all() and batch["history"].shape == (4, 10)


@pytest.mark.parametrize("strategy", ["catalogue", "popularity", "hallucinated", "in_prompt"])
def test_negative_strategies(strategy):
    counts = np.arange(50)[::-1].astype(float)
    sampler = NegativeSampler(strategy, 5, 50, counts, seed=1)
    cands = list(range(10, 30))
    for ex in range(20):
        negs = sampler.sample(ex, 0, history=[1, 2, 3], target=10, candidates=cands)
        assert len(negs) == len(set(negs)) == 5
        assert not set(negs) & {1, 2, 3, 10}
        if strategy == "in_prompt":
            assert set(negs) <= set(cands)
        if strategy == "hallucinated":
            assert not set(negs) & set(cands)
        assert negs == sampler.sample(ex, 0, history=[1, 2, 3], target=10, candidates=cands)


def test_popularity_sampler_prefers_popular_items():
    counts = np.zeros(100)
    counts[:10] = 1000
    sampler = NegativeSampler("popularity", 3, 100, counts, seed=0)
    drawn = [n for ex in range(200) for n in sampler.sample(ex, 0, [50], 51, [])]
    assert np.mean(np.asarray(drawn) < 10) > 0.8


def test_mixed_strategy_uses_providers_and_weights():
    sampler = NegativeSampler("mixed", 4, 40, np.ones(40), weights={"self_hard": 1.0, "random": 1.0}, seed=0)
    assert sampler.needs_provider() == ["self_hard"]
    sampler.set_provider("self_hard", lambda ex: [39, 38, 37, 36, 35])
    negs = sampler.sample(0, 0, [1], 2, list(range(2, 22)))
    assert len(negs) == 4 and len(set(negs)) == 4
    assert any(n >= 35 for n in negs)
    with pytest.raises(ValueError, match="weights"):
        NegativeSampler("mixed", 2, 40, np.ones(40), weights={"bogus": 1.0})


def test_resume_skips_consumed_examples(synthetic):
    cfg, prepared = synthetic
    dm = _dm(cfg, prepared)
    full = [b["example_index"].tolist() for b in _epoch(dm, 1)]
    dm.index_sampler.resume_at(1, 8)
    resumed = [b["example_index"].tolist() for b in _epoch(dm, 1)]
    assert resumed == full[2:]
    assert [b["example_index"].tolist() for b in _epoch(dm, 1)] == full


@needs_data
def test_lastfm_eval_prompt_is_s_dpo_text(tmp_path, cache_dir):
    cfg = compose_cfg(["model=tiny_random", "dataset=lastfm"], tmp_path, cache_dir)
    prepared = build.data(cfg)
    dm = RecDataModule(prepared, build_byte_tokenizer(), dict(cfg.dataset), 3, {"strategy": "in_prompt"}, 2, 2,
                       use_chat_template=False)
    ex = dm.eval_dataset("test")[0]
    assert len(dm.eval_dataset("test")) == 122
    assert ex["prompt_text"].startswith("This person has listened some musics from these bands ")
    assert "Choose the answer from the following 20 band names: " in ex["prompt_text"]
    assert ex["prompt_text"].endswith(". Answer: ")
    titles = [prepared.titles[c] for c in ex["candidates"]]
    assert ", ".join(titles) in ex["prompt_text"]


def test_seqrec_hard_negatives_are_the_top_scored_items_outside_history_and_target(synthetic):
    from napo_lab.models.hard_negatives import seqrec_hard_factory

    cfg, prepared = synthetic
    dm = _dm(cfg, prepared, k=3, strategy="seqrec_hard")

    class Scorer:  # scores item i as i: the hardest negatives are the highest ids
        def scores(self, history):
            return torch.arange(prepared.n_items, dtype=torch.float32).expand(history.shape[0], -1)

    dm.negative_sampler.set_provider("seqrec_hard", seqrec_hard_factory(Scorer())(dm))
    batch = _epoch(dm, 0)[0]
    rows = dm.train_dataset.rows
    for b, idx in enumerate(batch["example_index"].tolist()):
        banned = {int(rows.iloc[idx]["target"])} | {int(h) for h in rows.iloc[idx]["history"]}
        expected = [i for i in range(prepared.n_items - 1, -1, -1) if i not in banned][:3]
        assert batch["item_ids"][b, 1:].tolist() == expected
