"""The study's samplers in the LLM preference stage (napo_lab.data.batch_negatives): the same draws
as the sequential models, completions that follow the items, adaptive picks by the sequential model
or by the policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napo_lab.data.batch_negatives import BatchNegatives, keep_ranked, select_adaptive
from napo_lab.data.datamodule import collate_train
from napo_lab.data.negatives import NegativeSpec, UserItems

N_ITEMS = 12
TITLES = [[100 + i, 7] for i in range(N_ITEMS)]  # "title tokens" of item i, then EOS 7
OWN = {0: [0, 1, 2], 1: [3, 4], 2: [5, 6, 7], 3: [8]}


def examples(epoch: int = 0) -> list[dict]:
    rows = [(0, [0, 1], 2), (1, [3], 4), (2, [5, 6], 7), (3, [], 8)]
    return [{"prompt_ids": [1, 2, 3], "completion_ids": [TITLES[t]], "item_ids": [t], "history": h, "user": u,
             "example_index": 10 + u, "epoch": epoch} for u, h, t in rows]


def sampler(**spec) -> BatchNegatives:
    ui = UserItems(list(OWN), list(OWN.values()), N_ITEMS)
    return BatchNegatives(NegativeSpec(**spec), N_ITEMS, TITLES, ui, ui.frequency(), seed=0, max_history=4,
                          seqrec=IdScorer())


class IdScorer(torch.nn.Module):
    """A stand-in sequential model: the score of an item is its id."""

    def candidate_scores(self, history, candidates):
        return candidates.float()


@pytest.mark.parametrize("spec", [
    {"sampler": "rns", "num_samples": 3},
    {"sampler": "pns", "num_samples": 3},
    {"sampler": "bns", "num_samples": 2, "pool": "targets"},
    {"sampler": "mns", "num_samples": 1, "num_uniform": 2},
])
def test_negatives_and_completions_follow_the_spec(spec):
    bn = sampler(**spec)
    for epoch in range(20):
        for e in bn(examples(epoch)):
            target, negs = e["item_ids"][0], e["item_ids"][1:]
            assert e["completion_ids"] == [TITLES[i] for i in e["item_ids"]]
            assert not set(negs) & set(OWN[e["user"]]) and target not in negs
            assert len(negs) <= bn.negatives_per_prompt


def test_in_batch_negatives_are_other_rows_targets():
    """targets pool = [2, 4, 7, 8]; user 1 owns 3, 4 -> its two negatives come from {2, 7, 8}."""
    bn = sampler(sampler="bns", num_samples=3, pool="targets")
    out = bn(examples())
    assert sorted(out[1]["item_ids"][1:]) == [2, 7, 8]
    assert sorted(out[0]["item_ids"][1:]) == [4, 7, 8]


def test_draws_are_seeded_by_epoch_and_batch():
    bn = sampler(sampler="rns", num_samples=3)
    a, b, c = bn(examples(0)), bn(examples(0)), bn(examples(1))
    assert [e["item_ids"] for e in a] == [e["item_ids"] for e in b]
    assert [e["item_ids"] for e in a] != [e["item_ids"] for e in c]


def test_adaptive_with_the_sequential_model_keeps_its_top_k():
    """scorer=seqrec, the stand-in scores items by id: the kept negatives are the largest allowed ids of
    the pool, best first."""
    bn = sampler(sampler="amns", num_samples=2, num_uniform=6, top_k=2, pool="targets", scorer="seqrec")
    gen_pool = bn.drawer.draw(torch.tensor([0, 1, 2, 3]), torch.tensor([[0, 1], [3, -1], [5, 6], [-1, -1]]),
                              torch.tensor([2, 4, 7, 8]), bn.generator(examples()))
    expected = keep_ranked(gen_pool.items, gen_pool.items.float(), 2)
    out = bn(examples())
    assert [e["item_ids"][1:] for e in out] == [[i for i in row if i >= 0] for row in expected.tolist()]
    for e in out:
        assert e["item_ids"][1:] == sorted(e["item_ids"][1:], reverse=True)


def test_adaptive_by_the_policy_marks_the_batch_and_select_keeps_the_top_k():
    bn = sampler(sampler="ans", num_samples=3, top_k=1, pool="targets", scorer="self")
    batch = bn.collate(collate_train)(examples(), max_history=4)
    assert batch["adaptive_top_k"] == 1 and batch["item_ids"].shape[1] == 4
    # the "policy" prefers the pool entry in the last valid column of every row
    scores = torch.where(batch["mask"], torch.arange(4.0).expand(4, 4), torch.full((4, 4), -1e9))
    picked = select_adaptive(batch, scores, 1)
    assert "adaptive_top_k" not in picked and picked["item_ids"].shape == (4, 2)
    for b in range(4):
        valid = batch["item_ids"][b][batch["mask"][b]].tolist()
        assert picked["item_ids"][b].tolist() == [valid[0], valid[-1]]
        assert picked["completion_ids"][b] == [TITLES[i] for i in picked["item_ids"][b].tolist()]
    assert picked["mask"].all()


def test_keep_ranked_pads_short_rows():
    items = torch.tensor([[5, -1, 3], [-1, -1, -1]])
    out = keep_ranked(items, torch.tensor([[1.0, 9.0, 2.0], [0.0, 0.0, 0.0]]), 2)
    assert out.tolist() == [[3, 5], [-1, -1]]


def test_seqrec_scorer_needs_a_model():
    ui = UserItems(list(OWN), list(OWN.values()), N_ITEMS)
    with pytest.raises(ValueError, match="scorer=seqrec"):
        BatchNegatives(NegativeSpec(sampler="ans", num_samples=3, top_k=1, scorer="seqrec"), N_ITEMS, TITLES,
                       ui, np.ones(N_ITEMS), 0)
