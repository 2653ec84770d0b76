"""Hand-computed values of the pairwise objectives (SFT, DPO, cDPO, IPO, SimPO, DMPO).

Notation: s = summed log-prob, h = s - s_ref, rewards r = beta * h, softplus(x) = log(1 + e^x),
so -log sigmoid(x) = softplus(-x).
"""

from __future__ import annotations

import math

import pytest

from napo_lab.losses import CDPOLoss, DMPOLoss, DPOLoss, IPOLoss, SFTLoss, SimPOLoss
from napo_lab.losses.testing import LN2, LN3, make_inputs, softplus


def test_sft_token_mean_and_metrics():
    """s = [[-2, -9], [-4, pad]], |y_w| = [2, 3].
    loss = -(-2 + -4) / (2 + 3) = 6/5 = 1.2.
    rewards (beta = 1): chosen mean (-2 - 4)/2 = -3; rejected: the one valid negative, -9;
    margin -3 - (-9) = 6; accuracy: -2 > -9 -> 1 of 1 pair.
    """
    inp = make_inputs([[-2.0, -9.0], [-4.0, 123.0]], lengths=[[2, 1], [3, 1]], mask=[[1, 1], [1, 0]])
    out = SFTLoss()(inp)
    assert out.loss.item() == pytest.approx(1.2)
    m = out.metrics
    assert (m["rewards/chosen"].item(), m["rewards/rejected"].item()) == pytest.approx((-3.0, -9.0))
    assert (m["rewards/margin"].item(), m["rewards/accuracy"].item()) == pytest.approx((6.0, 1.0))
    assert SFTLoss.needs_reference is False


def test_sft_without_negatives():
    """K = 0: loss = 3/3 = 1; rejected and accuracy are defined as 0 (no pair exists)."""
    out = SFTLoss()(make_inputs([[-3.0]], lengths=[[3]]))
    assert out.loss.item() == pytest.approx(1.0)
    assert out.metrics["rewards/rejected"].item() == 0.0


def test_dpo_hand_values():
    """beta = 0.5, ref = -2 everywhere.
    ex0: s = [-1, -3] -> h = [1, -1], beta (h_w - h_l) = 0.5 * 2 = 1   -> softplus(-1)
    ex1: s = [-2, -1] -> h = [0,  1], beta (h_w - h_l) = 0.5 * -1 = -0.5 -> softplus(0.5)
    loss = (softplus(-1) + softplus(0.5)) / 2 = (0.3132617 + 0.9740770) / 2 = 0.6436693.
    rewards: chosen (0.5 + 0)/2 = 0.25, rejected (-0.5 + 0.5)/2 = 0, margin 0.25,
    accuracy: 0.5 > -0.5 yes, 0 > 0.5 no -> 0.5.
    """
    inp = make_inputs([[-1.0, -3.0], [-2.0, -1.0]], ref=[[-2.0, -2.0], [-2.0, -2.0]])
    out = DPOLoss(beta=0.5)(inp)
    assert out.loss.item() == pytest.approx((softplus(-1) + softplus(0.5)) / 2)
    assert out.loss.item() == pytest.approx(0.6436693, abs=1e-7)
    m = out.metrics
    assert [
        m[k].item() for k in ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy")
    ] == (pytest.approx([0.25, 0.0, 0.25, 0.5]))


def test_dpo_multi_negative_averages_valid_pairs():
    """beta = 1, no reference difference (ref = 0).
    ex0: h_w = 0, h_l = [0, -ln 3] -> pair losses softplus(0) = ln 2, softplus(-ln 3) = ln(4/3);
         example mean (ln 2 + ln 4/3)/2.
    ex1: h_w = 0, h_l = [0, pad=1e4] -> only ln 2.
    loss = ((ln 2 + ln 4/3)/2 + ln 2)/2.
    """
    inp = make_inputs([[0.0, 0.0, -LN3], [0.0, 0.0, 1e4]], ref=[[0.0] * 3] * 2, mask=[[1, 1, 1], [1, 1, 0]])
    out = DPOLoss(beta=1.0)(inp)
    expected = ((LN2 + math.log(4 / 3)) / 2 + LN2) / 2
    assert out.loss.item() == pytest.approx(expected)


def test_cdpo_hand_value():
    """eps = 0.25, beta = 1, D = h_w - h_l = 0 - (-ln 3) = ln 3:
    sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    loss = -(0.75) ln(3/4) - 0.25 ln(1/4) = 0.75 * 0.2876821 + 0.25 * 1.3862944 = 0.5623351.
    """
    out = CDPOLoss(beta=1.0, eps=0.25)(make_inputs([[0.0, -LN3]], ref=[[0.0, 0.0]]))
    assert out.loss.item() == pytest.approx(0.75 * math.log(4 / 3) + 0.25 * math.log(4))
    assert out.loss.item() == pytest.approx(0.5623351, abs=1e-7)
    # eps = 0 is DPO
    inp = make_inputs([[0.3, -1.2]], ref=[[0.1, 0.4]])
    assert CDPOLoss(beta=0.7, eps=0.0)(inp).loss.item() == pytest.approx(DPOLoss(beta=0.7)(inp).loss.item())


def test_ipo_hand_value():
    """beta = 0.5 -> target 1/(2 beta) = 1. Length-averaged log-probs.
    ex0: |y| = [2, 4], s = [-2, -8] -> [-1, -2]; ref = [-4, -4] -> [-2, -1];
         h = [1, -1], D = 2, (2 - 1)^2 = 1.
    ex1: |y| = [1, 1], s = [-1, -4], ref = [-4, -4] -> h = [3, 0], D = 3, (3 - 1)^2 = 4.
    loss = (1 + 4)/2 = 2.5. rewards beta*h: chosen (0.5 + 1.5)/2 = 1, rejected (-0.5 + 0)/2 = -0.25.
    """
    inp = make_inputs([[-2.0, -8.0], [-1.0, -4.0]], ref=[[-4.0, -4.0]] * 2, lengths=[[2, 4], [1, 1]])
    out = IPOLoss(beta=0.5)(inp)
    assert out.loss.item() == pytest.approx(2.5)
    assert out.metrics["rewards/chosen"].item() == pytest.approx(1.0)
    assert out.metrics["rewards/rejected"].item() == pytest.approx(-0.25)


def test_simpo_hand_value_reference_free():
    """beta = 2, gamma = 1; s_w = -2 over 2 tokens -> -1; s_l = -6 over 3 tokens -> -2.
    beta (-1 - (-2)) - gamma = 2 - 1 = 1 -> loss = softplus(-1) = 0.3132617. No ref_logps given.
    """
    loss = SimPOLoss(beta=2.0, gamma=1.0)
    assert loss.needs_reference is False
    out = loss(make_inputs([[-2.0, -6.0]], lengths=[[2, 3]]))
    assert out.loss.item() == pytest.approx(softplus(-1.0))
    assert out.metrics["rewards/chosen"].item() == pytest.approx(-2.0)  # beta * s/|y| = 2 * -1


def test_dmpo_hand_value():
    """beta = 1, ref = 0: h_w = 1, valid h_l = [0, -2] (third padded with 100), mean -1.
    loss = -log sigmoid(1 - (-1)) = softplus(-2) = 0.1269280.
    """
    inp = make_inputs([[1.0, 0.0, -2.0, 100.0]], ref=[[0.0] * 4], mask=[[1, 1, 1, 0]])
    out = DMPOLoss(beta=1.0)(inp)
    assert out.loss.item() == pytest.approx(softplus(-2.0))
    assert out.metrics["rewards/rejected"].item() == pytest.approx(-1.0)
