"""NAPO's switches between the official code's behaviour and napo_lab's (issue 13), one loss object
at a time: neighbour count, EMA bias correction, EMA in eval mode, the range of gamma0 and alpha, and
the presets' settings. Values are worked by hand in the docstrings (beta = 1 throughout)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from napo_lab.losses import NAPOLoss
from napo_lab.losses.napo_sharing import n_neighbours
from napo_lab.losses.testing import make_inputs

CONF = Path(__file__).resolve().parents[2] / "conf" / "loss"


def preset(name: str) -> NAPOLoss:
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml").objective)


# --------------------------------------------------------------------------- neighbour count


def test_neighbour_count_truncates_like_the_official_code():
    """rho = 0.58, N = 51: 0.58 * 50 = 28.999999999999996 in floating point. The official code's
    int() gives 28 neighbours; the decimal rho means 29."""
    assert 0.58 * 50 < 29
    assert n_neighbours(0.58, 51, "truncate") == 28
    assert n_neighbours(0.58, 51, "tolerant") == 29
    assert n_neighbours(0.7, 11, "truncate") == n_neighbours(0.7, 11, "tolerant") == 7  # 7.000000000000001
    states = torch.randn(51, 4, generator=torch.Generator().manual_seed(0))
    assert NAPOLoss(rho=0.58, neighbour_count="truncate").neighbours(states).shape == (51, 28)
    assert NAPOLoss(rho=0.58, neighbour_count="tolerant").neighbours(states).shape == (51, 29)


def test_neighbour_count_in_the_loss_and_presets():
    g = torch.Generator().manual_seed(1)
    b = 51
    inp = make_inputs(
        torch.randn(b, 2, generator=g).tolist(),
        item_ids=torch.arange(2 * b).view(b, 2),
        user_states=torch.randn(b, 3, generator=g),
    )
    for rule, n in (("truncate", 28), ("tolerant", 29)):
        out = NAPOLoss(share="reuse", rho=0.58, gamma0=0.0, neighbour_count=rule)(inp)
        assert out.metrics["napo/n_neighbours"].item() == n
    assert preset("napo_official").neighbour_count == "truncate"
    assert preset("napo").neighbour_count == "tolerant"


# --------------------------------------------------------------------------- EMA bias correction


def margin_batch(m: float):
    """One user, K = 1, s = [0, 0], the negative scored m: loss = log(1 + e^gamma)."""
    return make_inputs([[0.0, 0.0]], seq_scores=[[0.0, m]])


@pytest.mark.parametrize(
    ("correct", "expected"),
    [
        # Published EMA, gamma0 = 1, alpha = 0.3, m = 0.9, M = 4, 4, 2:
        #   EMA 0.4, 0.76, 0.884; gamma = 1 - 0.3 (M - EMA) = -0.08, 0.028, 0.6652
        (False, [(0.4, -0.08), (0.76, 0.028), (0.884, 0.6652)]),
        # Bias-corrected: EMA_t / (1 - 0.9^t) = 0.4/0.1 = 4, 0.76/0.19 = 4, 0.884/0.271 = 3.261992...
        #   gamma = 1, 1, 1 - 0.3 (2 - 3.261992) = 1.378598 (the running mean of M, from step 1 on)
        (True, [(4.0, 1.0), (4.0, 1.0), (0.884 / 0.271, 1 - 0.3 * (2 - 0.884 / 0.271))]),
    ],
)
def test_ema_bias_correction_three_steps(correct, expected):
    loss = NAPOLoss(share="none", gamma0=1.0, alpha=0.3, momentum=0.9, ema_bias_correction=correct).train()
    for m, (ema, gamma) in zip((4.0, 4.0, 2.0), expected):
        out = loss(margin_batch(m))
        assert out.metrics["napo/ema"].item() == pytest.approx(ema, rel=1e-6)
        assert out.metrics["napo/gamma"].item() == pytest.approx(gamma, rel=1e-5, abs=1e-6)
        assert out.loss.item() == pytest.approx(math.log1p(math.exp(gamma)), rel=1e-6)
    assert loss.margin.ema.item() == pytest.approx(0.884, rel=1e-6)  # the stored EMA is the raw one
    assert int(loss.margin.steps) == 3


def test_bias_correction_survives_a_state_dict_round_trip_and_eval_before_any_step():
    """Eval before any update: no EMA yet, the corrected reference is M_batch itself, gamma = gamma0.
    After 2 training steps at M = 4 the state dict holds EMA 0.76 and steps 2; a fresh loss goes on
    with EMA 0.884 / 0.271 at M = 2."""
    fresh = NAPOLoss(share="none", alpha=0.3, momentum=0.9, ema_bias_correction=True).eval()
    assert fresh(margin_batch(5.0)).metrics["napo/gamma"].item() == pytest.approx(1.0)
    loss = NAPOLoss(share="none", alpha=0.3, momentum=0.9, ema_bias_correction=True).train()
    loss(margin_batch(4.0))
    loss(margin_batch(4.0))
    fresh.load_state_dict(loss.state_dict())
    fresh.train()
    out = fresh(margin_batch(2.0))
    assert out.metrics["napo/gamma"].item() == pytest.approx(1 - 0.3 * (2 - 0.884 / 0.271), rel=1e-5)


def test_presets_bias_correction():
    assert preset("napo_official").margin.bias_correction is False
    assert preset("napo").margin.bias_correction is True


# --------------------------------------------------------------------------- EMA in eval mode


def test_ema_in_eval():
    """m = 0.9, alpha = 0.3. Train step at M = 4: EMA 0.4. Then an eval call at M = 2:
    ema_in_eval=False: EMA stays 0.4, gamma = 1 - 0.3 (2 - 0.4) = 0.52;
    ema_in_eval=True (official): EMA = 0.36 + 0.2 = 0.56, gamma = 1 - 0.3 (2 - 0.56) = 0.568."""
    for flag, ema, gamma in ((False, 0.4, 0.52), (True, 0.56, 0.568)):
        loss = NAPOLoss(share="none", alpha=0.3, momentum=0.9, ema_bias_correction=False, ema_in_eval=flag)
        loss.train()(margin_batch(4.0))
        with torch.no_grad():
            out = loss.eval()(margin_batch(2.0))
        assert loss.margin.ema.item() == pytest.approx(ema, rel=1e-6)
        assert out.metrics["napo/gamma"].item() == pytest.approx(gamma, rel=1e-6)
        assert int(loss.margin.steps) == (2 if flag else 1)
    assert preset("napo_official").margin.update_in_eval is True
    assert preset("napo").margin.update_in_eval is False


# --------------------------------------------------------------------------- gamma0 / alpha range


@pytest.mark.parametrize("kwargs", [{"gamma0": -1.0}, {"gamma0": -1e-9}, {"alpha": -0.3},
                                    {"gamma0": float("inf")}, {"gamma0": float("nan")}])
def test_margin_options_outside_their_range_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        NAPOLoss(**kwargs)


def test_margin_options_at_the_edge_of_their_range():
    assert NAPOLoss(gamma0=0.0).margin.gamma0 == 0.0  # no margin: reference-free S-DPO with sharing
    assert NAPOLoss(alpha=0.0).margin.alpha == 0.0  # constant margin gamma0
    assert NAPOLoss(gamma0=5.0, alpha=2.0).margin.gamma0 == 5.0


# --------------------------------------------------------------------------- presets


def test_official_and_fixed_presets_differ_where_documented():
    official, fixed = preset("napo_official"), preset("napo")
    assert (official.borrowed_score, official.margin.distributed) == ("owner", "local")
    assert (fixed.borrowed_score, fixed.margin.distributed) == ("borrower", "global")
    for loss in (official, fixed):
        assert (loss.beta, loss.rho, loss.margin.gamma0, loss.margin.alpha, loss.margin.momentum) == (
            1.0, 0.7, 1.0, 0.3, 0.9)
        assert loss.margin.granularity == "batch" and not loss.use_reference
