"""The sampled-negative losses by hand (napo_lab.models.seqrec.objectives), and training with each sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napo_lab.models.seqrec.negative_batches import NegativeBatches
from napo_lab.models.seqrec.objectives import bce_loss, bpr_loss, sampled_softmax_loss

LN2, LN3 = math.log(2), math.log(3)


def test_bce_by_hand():
    """pos = [0, ln 3]: softplus(-0) = ln 2, softplus(-ln 3) = ln(4/3); positive mean = (ln 2 + ln 4/3) / 2.
    neg = [[0, ln 3], [-ln 3, (empty)]]: softplus = ln 2, ln 4, ln(4/3); the empty slot is not counted,
    so the negative mean is (ln 2 + ln 4 + ln 4/3) / 3. L = sum of the two means."""
    pos = torch.tensor([0.0, LN3])
    neg = torch.tensor([[0.0, LN3], [-LN3, 123.0]])
    valid = torch.tensor([[True, True], [True, False]])
    expected = (LN2 + math.log(4 / 3)) / 2 + (LN2 + math.log(4) + math.log(4 / 3)) / 3
    assert bce_loss(pos, neg, valid).item() == pytest.approx(expected, rel=1e-6)


def test_bce_positive_and_negative_terms_are_averaged_separately():
    """Two negatives per row instead of one leave the weight of the positive term unchanged."""
    pos = torch.zeros(2)
    one = bce_loss(pos, torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool))
    four = bce_loss(pos, torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool))
    assert one.item() == pytest.approx(2 * LN2) and four.item() == pytest.approx(2 * LN2)


def test_bce_adaptive_zeroes_dropped_logits_without_gradient():
    """ans/amns: entries outside the top-k count as logit 0 (ln 2 each) and get no gradient."""
    pos = torch.tensor([0.0], requires_grad=True)
    neg = torch.tensor([[LN3, 5.0, -1.0]], requires_grad=True)
    valid = torch.ones(1, 3, dtype=torch.bool)
    keep = torch.tensor([[True, False, False]])
    loss = bce_loss(pos, neg, valid, keep)
    assert loss.item() == pytest.approx(LN2 + (math.log(4) + LN2 + LN2) / 3, rel=1e-6)
    loss.backward()
    # d/dx softplus(x) / 3 = sigmoid(x) / 3 for the kept entry; exactly 0 for the dropped ones
    assert neg.grad.tolist()[0] == pytest.approx([0.75 / 3, 0.0, 0.0])
    assert pos.grad.item() == pytest.approx(-0.5)


def test_bpr_and_sampled_softmax_by_hand():
    pos = torch.tensor([LN3])
    neg = torch.tensor([[0.0, 9.0]])
    valid = torch.tensor([[True, False]])
    # bpr: -log sigmoid(ln 3 - 0) = ln(1 + 1/3)
    assert bpr_loss(pos, neg, valid).item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    # softmax over [ln 3, 0]: -log(3 / 4)
    assert sampled_softmax_loss(pos, neg, valid).item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    # keep drops the first negative too: bpr has nothing left (0), softmax only the positive (0)
    keep = torch.tensor([[False, True]])
    assert bpr_loss(pos, neg, valid, keep).item() == 0.0
    assert sampled_softmax_loss(pos, neg, valid, keep).item() == pytest.approx(0.0, abs=1e-7)


class _Drawer:
    """Stub: the negatives of a row are (its target + epoch-draw) mod 50, so replays are recognisable."""

    n_items = 50

    def draw(self, users, history, target, gen):
        return type("D", (), {"items": ((target.unsqueeze(1) + torch.randint(1, 49, (len(target), 3),
                                                                             generator=gen)) % 50)})()


def test_static_negatives_after_n_epochs_replay_stored_batches():
    rows = 10
    batches = NegativeBatches(np.full((rows, 2), -1), np.arange(rows), np.arange(rows), _Drawer(),
                              batch_size=4, seed=0, static_after_epochs=2)
    epochs = [list(batches) for _ in range(5)]
    assert [len(e) for e in epochs] == [3, 3, 3, 3, 3]
    stored = {(tuple(b["target"].tolist()), tuple(map(tuple, b["negatives"].tolist()))) for e in epochs[:2] for b in e}
    assert len(stored) == 6  # two epochs of fresh batches
    for e in epochs[2:]:  # afterwards: only replays of stored batches (rows and negatives frozen)
        for b in e:
            assert (tuple(b["target"].tolist()), tuple(map(tuple, b["negatives"].tolist()))) in stored
    fresh = NegativeBatches(np.full((rows, 2), -1), np.arange(rows), np.arange(rows), _Drawer(), 4, 0, None)
    a, b = list(fresh), list(fresh)
    assert not all(torch.equal(x["negatives"], y["negatives"]) for x, y in zip(a, b))  # redrawn each epoch
