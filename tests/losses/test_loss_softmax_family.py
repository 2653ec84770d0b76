"""Hand-computed values of the softmax family: S-DPO, RecPO-style, RosePO-style."""

from __future__ import annotations

import math

import pytest
import torch

from napo_lab.losses import DPOLoss, RecPOLoss, RosePOLoss, SDPOLoss
from napo_lab.losses.testing import LN2, LN3, make_inputs


def test_sdpo_hand_value():
    """beta = 0.5, ref = -0.5 for every completion (so h differences = s differences).
    s_w = -1, s_l = [-1, -1 + 2 ln 2, pad = +50].
    beta (h_lk - h_w) = [0, 0.5 * 2 ln 2 = ln 2]; loss = log(1 + e^0 + e^{ln 2}) = log(1 + 1 + 2) = ln 4.
    """
    inp = make_inputs([[-1.0, -1.0, -1.0 + 2 * LN2, 50.0]], ref=[[-0.5] * 4], mask=[[1, 1, 1, 0]])
    out = SDPOLoss(beta=0.5)(inp)
    assert out.loss.item() == pytest.approx(math.log(4.0))


def test_sdpo_equals_dpo_at_k1():
    g = torch.Generator().manual_seed(0)
    policy = (torch.randn(16, 2, generator=g) * 5).tolist()
    ref = (torch.randn(16, 2, generator=g) * 5).tolist()
    for beta in (0.1, 1.0, 3.0):
        a = SDPOLoss(beta=beta)(make_inputs(policy, ref=ref))
        b = DPOLoss(beta=beta)(make_inputs(policy, ref=ref))
        assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-12)
        for k in a.metrics:
            assert a.metrics[k].item() == pytest.approx(b.metrics[k].item(), rel=1e-6)


def test_recpo_constant_margin():
    """margin = ln 2, beta = 1, all h = 0: loss = log(1 + e^{ln 2} + e^{ln 2}) = log(1 + 2 + 2) = ln 5."""
    out = RecPOLoss(beta=1.0, margin=LN2)(make_inputs([[0.0, 0.0, 0.0]], ref=[[0.0] * 3]))
    assert out.loss.item() == pytest.approx(math.log(5.0))


def test_recpo_seq_score_margin():
    """margin = 1, z = [ln 3, 0, ln 3]: m_1 = sigmoid(ln 3 - 0) = 3/4, m_2 = sigmoid(0) = 1/2.
    All h = 0: loss = log(1 + e^{0.75} + e^{0.5}).
    """
    loss = RecPOLoss(beta=1.0, margin=1.0, margin_mode="seq_score")
    assert loss.needs_sequential_model
    out = loss(make_inputs([[0.0, 0.0, 0.0]], ref=[[0.0] * 3], seq_scores=[[LN3, 0.0, LN3]]))
    assert out.loss.item() == pytest.approx(math.log(1 + math.exp(0.75) + math.exp(0.5)))
    assert out.metrics["recpo/margin"].item() == pytest.approx(0.625)


def _rosepo_pair(eps: float) -> float:
    """cDPO at beta D = ln 3: -(1-eps) ln(3/4) - eps ln(1/4)."""
    return (1 - eps) * math.log(4 / 3) + eps * math.log(4)


def test_rosepo_smoothing_from_sequential_model():
    """eps_max = 0.4, z_w = 0, z_l = ln 3: eps = 0.4 * sigmoid(ln 3 - 0) = 0.4 * 0.75 = 0.3.
    h_w = ln 3, h_l = 0 -> loss = 0.7 ln(4/3) + 0.3 ln 4.
    """
    inp = make_inputs([[LN3, 0.0]], ref=[[0.0, 0.0]], seq_scores=[[0.0, LN3]])
    out = RosePOLoss(beta=1.0, eps_max=0.4)(inp)
    assert out.loss.item() == pytest.approx(_rosepo_pair(0.3))
    assert out.metrics["rosepo/eps"].item() == pytest.approx(0.3)
    # Same scores from seq_all_scores gathered at item_ids: item 5 -> 0, item 7 -> ln 3.
    all_scores = torch.zeros(1, 10, dtype=torch.float64)
    all_scores[0, 7] = LN3
    inp = make_inputs([[LN3, 0.0]], ref=[[0.0, 0.0]], seq_all_scores=all_scores, item_ids=[[5, 7]])
    assert RosePOLoss(beta=1.0, eps_max=0.4)(inp).loss.item() == pytest.approx(_rosepo_pair(0.3))


def test_rosepo_smoothing_inputs_clip_and_fallback():
    """Given smoothing [[0.2, 0.9]] with eps_max 0.4 -> [0.2, 0.4 (clipped)]; a negative whose item is
    unknown (id -1, e.g. a hallucinated title) with seq_all_scores takes eps_fallback = 0.1."""
    inp = make_inputs([[LN3, 0.0, 0.0]], ref=[[0.0] * 3], smoothing=[[0.2, 0.9]])
    out = RosePOLoss(beta=1.0, eps_max=0.4)(inp)
    assert out.loss.item() == pytest.approx((_rosepo_pair(0.2) + _rosepo_pair(0.4)) / 2)

    all_scores = torch.zeros(1, 10, dtype=torch.float64)
    all_scores[0, 7] = LN3
    inp = make_inputs([[LN3, 0.0, 0.0]], ref=[[0.0] * 3], seq_all_scores=all_scores, item_ids=[[5, 7, -1]])
    out = RosePOLoss(beta=1.0, eps_max=0.4, eps_fallback=0.1)(inp)
    assert out.loss.item() == pytest.approx((_rosepo_pair(0.3) + _rosepo_pair(0.1)) / 2)

    out = RosePOLoss(beta=1.0, eps_fallback=0.1, smoothing_source="constant")(
        make_inputs([[LN3, 0.0]], ref=[[0.0, 0.0]])
    )
    assert out.loss.item() == pytest.approx(_rosepo_pair(0.1))
