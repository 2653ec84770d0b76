"""An item id -1 in a valid slot (an item outside the catalogue: no id, so no sequential-model score)
takes each objective's documented fallback, whichever score field the caller filled in. A caller
that builds ``seq_scores`` with ``gather(ids.clamp(min=0))`` puts item 0's score there; the losses
must not read it."""

from __future__ import annotations

import math

import pytest
import torch

from napo_lab.losses import NAPOLoss, RecPOLoss, RosePOLoss
from napo_lab.losses.testing import make_inputs


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def cdpo(d: float, eps: float) -> float:
    return -(1 - eps) * log_sigmoid(d) - eps * log_sigmoid(-d)


def rosepo_case():
    """One user, K = 2, reference 0, s = [0, -1, -0.5] -> D = 1 and 0.5. Negative 1 has item id -1
    but a finite seq_scores entry 3 (what a clamped gather reads: item 0's score); negative 2 is
    item 7 scored 1; the positive scores 0.
    eps_1 = eps_fallback = 0.1 (no oracle value), eps_2 = 0.3 sigmoid(1 - 0) = 0.219318...
    loss = (cdpo(1, 0.1) + cdpo(0.5, eps_2)) / 2 = (0.413262 + 0.583736) / 2 = 0.498499,
    with cdpo(D, eps) = -(1 - eps) log sigmoid(D) - eps log sigmoid(-D).
    Reading the score instead gives eps_1 = 0.3 sigmoid(3) = 0.285772 and a loss of 0.591385."""
    return make_inputs([[0.0, -1.0, -0.5]], ref=[[0.0, 0.0, 0.0]], item_ids=[[5, -1, 7]],
                       seq_scores=[[0.0, 3.0, 1.0]])


def test_rosepo_unknown_item_takes_eps_fallback_on_the_seq_scores_path():
    eps2 = 0.3 / (1 + math.exp(-1.0))
    expected = (cdpo(1.0, 0.1) + cdpo(0.5, eps2)) / 2
    wrong = (cdpo(1.0, 0.3 / (1 + math.exp(-3.0))) + cdpo(0.5, eps2)) / 2
    assert expected == pytest.approx(0.498499, abs=1e-6) and wrong == pytest.approx(0.591385, abs=1e-6)
    for source in ("seqrec", "auto"):
        out = RosePOLoss(smoothing_source=source)(rosepo_case())
        assert out.loss.item() == pytest.approx(expected, rel=1e-9)
        assert out.metrics["rosepo/eps"].item() == pytest.approx((0.1 + eps2) / 2)


def test_rosepo_unknown_item_on_the_seq_all_scores_path():
    inp = rosepo_case()
    inp.seq_scores = None
    inp.seq_all_scores = torch.zeros(1, 10, dtype=torch.float64)
    inp.seq_all_scores[0, 0], inp.seq_all_scores[0, 7] = 3.0, 1.0  # item 0 would give eps 0.2858
    eps2 = 0.3 / (1 + math.exp(-1.0))
    assert RosePOLoss(smoothing_source="seqrec")(inp).loss.item() == pytest.approx(
        (cdpo(1.0, 0.1) + cdpo(0.5, eps2)) / 2, rel=1e-9)


def test_recpo_unknown_item_takes_half_margin():
    """margin 0.4, seq_score mode: negative 1 (id -1, score field 3) gets margin/2 = 0.2; negative 2
    (score 1 vs positive 0) gets 0.4 sigmoid(-1). s = [0, ln 1, ln 2], reference 0:
    loss = log(1 + e^{0.2} * 1 + e^{0.4 sigmoid(-1)} * 2)."""
    inp = make_inputs([[0.0, 0.0, math.log(2.0)]], ref=[[0.0] * 3], item_ids=[[5, -1, 7]],
                      seq_scores=[[0.0, 3.0, 1.0]])
    out = RecPOLoss(margin=0.4, margin_mode="seq_score")(inp)
    m2 = 0.4 / (1 + math.exp(1.0))
    assert out.loss.item() == pytest.approx(math.log(1 + math.exp(0.2) + 2 * math.exp(m2)), rel=1e-9)


def test_napo_unknown_item_is_left_out_of_m_batch():
    """share=none, K = 2, negative scores [id -1: field says 10, item 7: 2]. M_batch = 2 (the unknown
    item has no score), not (10 + 2) / 2 = 6. Published EMA, m = 0.9: EMA = 0.2,
    gamma = 1 - 0.3 (2 - 0.2) = 0.46."""
    inp = make_inputs([[0.0, 0.0, 0.0]], item_ids=[[5, -1, 7]], seq_scores=[[0.0, 10.0, 2.0]])
    out = NAPOLoss(share="none", alpha=0.3, momentum=0.9, ema_bias_correction=False).train()(inp)
    assert out.metrics["napo/m_batch"].item() == pytest.approx(2.0)
    assert out.metrics["napo/gamma"].item() == pytest.approx(0.46, rel=1e-6)


def test_item_helpers_give_nan_for_unknown_ids():
    from napo_lab.losses.base import gather_items, item_scores

    table = torch.tensor([[5.0, 6.0, 7.0], [1.0, 2.0, 3.0]])
    ids = torch.tensor([[2, -1], [-1, 0]])
    got = gather_items(table, ids)
    assert got[0, 0] == 7.0 and got[1, 1] == 1.0 and got[0, 1].isnan() and got[1, 0].isnan()
    shared = gather_items(torch.tensor([4.0, 8.0, 9.0]), ids)  # one table for every row (popularity)
    assert shared[0, 0] == 9.0 and shared[1, 1] == 4.0 and shared[0, 1].isnan()
    inp = make_inputs([[0.0, 0.0]], item_ids=[[1, -1]], seq_scores=[[0.5, 9.0]])
    scores = item_scores(inp)
    assert scores[0, 0] == 0.5 and scores[0, 1].isnan()
