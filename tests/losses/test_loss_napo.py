"""NAPO: neighbour selection, false-negative masking, reuse vs exact, detaching, the margin EMA.

All hand-worked examples use beta = 1, positives with s_w = 0 and negatives with s_l = ln(x), so a
negative contributes e^{s_l - s_w} = x to ``log(1 + sum ...)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from napo_lab.losses import NAPOLoss
from napo_lab.losses.base import LossInputs
from napo_lab.losses.testing import LN2, make_inputs

LN = math.log

# Four users with known states; dot products:
#   u0=[1,0]   : u1 .9,  u2 0,  u3 .6   -> neighbours {1, 3}
#   u1=[.9,.1] : u0 .9,  u2 .1, u3 .58  -> {0, 3}
#   u2=[0,1]   : u0 0,   u1 .1, u3 .4   -> {3, 1}
#   u3=[.6,.4] : u0 .6,  u1 .58, u2 .4  -> {0, 1}
# rho = 0.7, N = 4 -> floor(0.7 * 3) = 2 neighbours.
STATES = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.4]]
NEIGHBOURS = [{1, 3}, {0, 3}, {3, 1}, {0, 1}]


def four_users(**overrides) -> LossInputs:
    """K = 1. Items: u0 pos 10 / neg 20, history [30, 31]; u1 pos 11 / neg 10 (= u0's positive);
    u2 pos 12 / neg 22; u3 pos 13 / neg 30 (in u0's history), history [20].
    Negative log-probs: u0 ln 1, u1 ln 2, u2 ln 3, u3 ln 4."""
    fields = dict(
        item_ids=[[10, 20], [11, 10], [12, 22], [13, 30]],
        history=[[30, 31, -1], [-1, -1, -1], [-1, -1, -1], [20, -1, -1]],
        user_states=STATES,
    )
    fields.update(overrides)
    return make_inputs([[0.0, LN(1)], [0.0, LN(2)], [0.0, LN(3)], [0.0, LN(4)]], **fields)


def static(**kw) -> NAPOLoss:
    """Constant zero margin (no sequential-model scores needed)."""
    return NAPOLoss(beta=1.0, gamma0=0.0, **kw)


def test_neighbour_selection():
    nb = NAPOLoss(rho=0.7).neighbours(torch.tensor(STATES))
    assert nb.shape == (4, 2)
    assert [set(row.tolist()) for row in nb] == NEIGHBOURS
    assert NAPOLoss(rho=0.3).neighbours(torch.tensor(STATES)).shape == (4, 0)  # floor(0.9) = 0
    assert NAPOLoss(rho=1.0).neighbours(torch.tensor(STATES)).shape == (4, 3)


def test_false_negative_masking_by_hand():
    """reuse, gamma = 0, masking on. Borrowed items (neighbours' negatives):
    u0 <- u1: 10 (= u0's positive, masked), u3: 30 (in u0's history, masked) -> L0 = log(1 + 1) = ln 2
    u1 <- u0: 20, u3: 30                     -> L1 = log(1 + 2 + 1 + 4) = ln 8
    u2 <- u3: 30, u1: 10                     -> L2 = log(1 + 3 + 4 + 2) = ln 10
    u3 <- u0: 20 (in u3's history, masked), u1: 10 -> L3 = log(1 + 4 + 2) = ln 7
    loss = (ln 2 + ln 8 + ln 10 + ln 7)/4 = ln(1120)/4; masked 3; pool sizes 1,3,3,2 -> mean 2.25.
    """
    out = static(share="reuse", mask_false_negatives=True)(four_users())
    assert out.loss.item() == pytest.approx(LN(1120) / 4)
    assert out.metrics["napo/masked_borrowed"].item() == 3
    assert out.metrics["napo/pool_size"].item() == pytest.approx(2.25)
    assert out.metrics["napo/n_neighbours"].item() == 2


def test_no_masking_reproduces_official():
    """Masking off: L0 = log(1+1+2+4) = ln 8, L1 = ln 8, L2 = ln 10, L3 = log(1+4+1+2) = ln 8."""
    out = static(share="reuse", mask_false_negatives=False)(four_users())
    assert out.loss.item() == pytest.approx((3 * LN(8) + LN(10)) / 4)
    assert out.metrics["napo/masked_borrowed"].item() == 0
    assert out.metrics["napo/pool_size"].item() == 3


def two_users(cross_requires_grad: bool = False) -> tuple[LossInputs, torch.Tensor]:
    """B = 2, rho = 1 -> each borrows the other. s = [[0, ln 1], [0, ln 2]].
    cross[0, 1, 1] = ln 3 (u1's negative under u0's prompt), cross[1, 0, 1] = ln 5. Every entry the
    loss must not read is NaN."""
    nan = float("nan")
    cross = torch.tensor(
        [[[nan, nan], [nan, LN(3)]], [[nan, LN(5)], [nan, nan]]],
        dtype=torch.float64,
        requires_grad=cross_requires_grad,
    )
    inp = make_inputs(
        [[0.0, 0.0], [0.0, LN2]],
        item_ids=[[1, 2], [3, 4]],
        history=[[-1], [-1]],
        user_states=[[1.0, 0.0], [0.0, 1.0]],
        cross_policy_logps=cross,
    )
    return inp, cross


def test_reuse_uses_owner_logps():
    """reuse: L0 = log(1 + 1 + 2) = ln 4 (u1's negative as scored under u1's prompt),
    L1 = log(1 + 2 + 1) = ln 4."""
    inp, _ = two_users()
    out = static(share="reuse", rho=1.0)(inp)
    assert out.loss.item() == pytest.approx(LN(4))


def test_exact_uses_cross_logps():
    """exact: L0 = log(1 + 1 + 3) = ln 5, L1 = log(1 + 2 + 5) = ln 8; NaN entries never read."""
    inp, cross = two_users(cross_requires_grad=True)
    out = static(share="exact", rho=1.0)(inp)
    assert out.loss.item() == pytest.approx((LN(5) + LN(8)) / 2)
    out.loss.backward()
    assert torch.isfinite(inp.policy_logps.grad).all() and torch.isfinite(cross.grad).all()
    # d loss / d cross[0,1,1] = (1/2) * 3/5; unread entries get exactly 0
    assert cross.grad[0, 1, 1].item() == pytest.approx(0.3)
    assert cross.grad[1, 0, 1].item() == pytest.approx(0.5 * 5 / 8)
    assert (cross.grad[0, 0] == 0).all() and (cross.grad[:, :, 0] == 0).all()


def test_exact_with_reference_uses_cross_ref():
    """use_reference: h = s - s_ref. ref = 0 for own completions; cross_ref[0,1,1] = ln 3 cancels the
    cross log-prob -> L0 = log(1 + 1 + 1) = ln 3; cross_ref[1,0,1] = 0 -> L1 = ln 8 as before."""
    inp, cross = two_users()
    inp.ref_logps = torch.zeros(2, 2, dtype=torch.float64)
    inp.cross_ref_logps = torch.nan_to_num(cross.detach().clone(), nan=0.0)
    inp.cross_ref_logps[1, 0, 1] = 0.0
    out = static(share="exact", rho=1.0, use_reference=True)(inp)
    assert out.loss.item() == pytest.approx((LN(3) + LN(8)) / 2)


def test_detach_shared_exact():
    for detach, expect_grad in ((False, True), (True, False)):
        inp, cross = two_users(cross_requires_grad=True)
        static(share="exact", rho=1.0, detach_shared=detach)(inp).loss.backward()
        got = cross.grad is not None and bool(cross.grad.abs().sum() > 0)
        assert got == expect_grad


def test_detach_shared_reuse_by_hand():
    """reuse, s = [[0, 0], [0, ln 2]]: both L0 and L1 are log(1 + 1 + 2) = ln 4.
    u1's negative s[1,1] appears in L1 (own) and in L0 (borrowed), each with softmax weight 2/4.
    d loss / d s[1,1] = (1/2)(2/4) own + (1/2)(2/4) borrowed = 0.5; with detach_shared only the own
    term remains: 0.25. With the official preset (own negatives detached too) only positives get
    gradient."""
    inp, _ = two_users()
    static(share="reuse", rho=1.0)(inp).loss.backward()
    assert inp.policy_logps.grad[1, 1].item() == pytest.approx(0.5)

    inp, _ = two_users()
    static(share="reuse", rho=1.0, detach_shared=True)(inp).loss.backward()
    assert inp.policy_logps.grad[1, 1].item() == pytest.approx(0.25)

    inp, _ = two_users()
    static(share="reuse", rho=1.0, detach_shared=True, detach_own_negatives=True)(inp).loss.backward()
    grad = inp.policy_logps.grad
    assert (grad[:, 1] == 0).all() and (grad[:, 0] < 0).all()


def margin_batch(m: float) -> LossInputs:
    """One user, K = 1, s = [0, 0], the sequential model scores the negative m.
    Loss = log(1 + e^{gamma + 0}) = softplus(gamma)."""
    return make_inputs([[0.0, 0.0]], seq_scores=[[0.0, m]])


def ema_loss() -> NAPOLoss:
    """The published EMA (no bias correction; napo.yaml turns it on, see test_loss_napo_options)."""
    return NAPOLoss(share="none", gamma0=1.0, alpha=0.5, momentum=0.5, granularity="batch",
                    ema_bias_correction=False)


def test_margin_ema_three_steps():
    """gamma0 = 1, alpha = 0.5, m = 0.5, EMA updated before gamma:
    step 1: M = 2: EMA = 0.5*0 + 0.5*2 = 1;      gamma = 1 - 0.5 (2 - 1)    = 0.5
    step 2: M = 4: EMA = 0.5*1 + 0.5*4 = 2.5;    gamma = 1 - 0.5 (4 - 2.5)  = 0.25
    step 3: M = 1: EMA = 0.5*2.5 + 0.5*1 = 1.75; gamma = 1 - 0.5 (1 - 1.75) = 1.375
    """
    loss = ema_loss().train()
    for m, ema, gamma in ((2.0, 1.0, 0.5), (4.0, 2.5, 0.25), (1.0, 1.75, 1.375)):
        out = loss(margin_batch(m))
        assert out.metrics["napo/m_batch"].item() == pytest.approx(m)
        assert out.metrics["napo/ema"].item() == pytest.approx(ema)
        assert out.metrics["napo/gamma"].item() == pytest.approx(gamma)
        assert out.loss.item() == pytest.approx(math.log1p(math.exp(gamma)), rel=1e-6)
    assert loss.margin.ema.item() == pytest.approx(1.75)
    assert int(loss.margin.steps) == 3


def test_ema_state_dict_round_trip_and_eval_mode():
    """After the three steps above EMA = 1.75. A fresh module loaded from the state dict continues
    identically. In eval mode the EMA stays 1.75: M = 3 -> gamma = 1 - 0.5 (3 - 1.75) = 0.375."""
    loss = ema_loss().train()
    for m in (2.0, 4.0, 1.0):
        loss(margin_batch(m))
    state = loss.state_dict()
    assert "margin.ema" in state and "margin.steps" in state
    fresh = ema_loss()
    fresh.load_state_dict(state)
    assert fresh.margin.ema.item() == pytest.approx(1.75)

    fresh.eval()
    out = fresh(margin_batch(3.0))
    assert out.metrics["napo/gamma"].item() == pytest.approx(0.375)
    assert fresh.margin.ema.item() == pytest.approx(1.75) and int(fresh.margin.steps) == 3

    fresh.train()
    # training step from the loaded state: EMA = 0.5*1.75 + 0.5*3 = 2.375, gamma = 1 - 0.5*0.625
    out = fresh(margin_batch(3.0))
    assert out.metrics["napo/gamma"].item() == pytest.approx(0.6875)


def granularity_batch() -> LossInputs:
    """B = 2, K = 2, all s = 0; negatives' scores u0 [1, 3], u1 [4, 6]."""
    return make_inputs([[0.0] * 3] * 2, seq_scores=[[0.0, 1.0, 3.0], [0.0, 4.0, 6.0]])


@pytest.mark.parametrize(
    ("granularity", "gammas"),
    [
        # M_batch = (1+3+4+6)/4 = 3.5, EMA = 0.5*3.5 = 1.75; gamma = 1 - 0.5 (level - 1.75)
        ("batch", [[0.125, 0.125], [0.125, 0.125]]),  # level 3.5
        ("user", [[0.875, 0.875], [-0.625, -0.625]]),  # levels 2 and 5
        ("negative", [[1.375, 0.375], [-0.125, -1.125]]),  # levels 1, 3, 4, 6
    ],
)
def test_margin_granularity(granularity, gammas):
    loss = NAPOLoss(share="none", gamma0=1.0, alpha=0.5, momentum=0.5, granularity=granularity,
                    ema_bias_correction=False)
    losses, _, metrics = loss.per_example(granularity_batch())
    for i in range(2):
        assert losses[i].item() == pytest.approx(LN(1 + sum(math.exp(g) for g in gammas[i])))
    assert metrics["napo/gamma"].item() == pytest.approx(sum(map(sum, gammas)) / 4)


def test_margin_borrowed_score_owner_or_borrower():
    """reuse, two users (rho = 1). borrowed_score=owner: a borrowed negative keeps its owner's score:
    scores u0 neg 1, u1 neg 3 -> candidates {1, 3} and {3, 1} -> M_batch = 2, whether or not
    seq_all_scores is given. borrowed_score=borrower: the borrowed item is scored for the borrower:
    u0 scores item 4 as 7, u1 scores item 2 as 5 -> {1, 7}, {3, 5} -> M_batch = 4."""
    inp, _ = two_users()
    inp.seq_scores = torch.tensor([[0.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    owner = NAPOLoss(share="reuse", rho=1.0, borrowed_score="owner")
    assert owner(inp).metrics["napo/m_batch"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="seq_all_scores"):  # borrower scores need every item's score
        NAPOLoss(share="reuse", rho=1.0, borrowed_score="borrower")(inp)
    all_scores = torch.zeros(2, 5, dtype=torch.float64)
    all_scores[0, 2], all_scores[0, 4] = 1.0, 7.0
    all_scores[1, 4], all_scores[1, 2] = 3.0, 5.0
    inp.seq_all_scores = all_scores
    borrower = NAPOLoss(share="reuse", rho=1.0, borrowed_score="borrower")
    assert borrower(inp).metrics["napo/m_batch"].item() == pytest.approx(4.0)
    owner = NAPOLoss(share="reuse", rho=1.0, borrowed_score="owner")
    assert owner(inp).metrics["napo/m_batch"].item() == pytest.approx(2.0)


def test_missing_inputs_are_named():
    inp = make_inputs([[0.0, 0.0]])
    with pytest.raises(ValueError, match="user_states"):
        NAPOLoss(share="reuse", gamma0=0.0)(inp)
    with pytest.raises(ValueError, match="sequential-model scores"):
        NAPOLoss(share="none")(inp)
    inp, _ = two_users()
    inp.cross_policy_logps = None
    with pytest.raises(ValueError, match="cross_policy_logps"):
        static(share="exact", rho=1.0)(inp)


def test_single_process_never_touches_distributed(monkeypatch):
    import torch.distributed as dist

    def boom(*args, **kwargs):
        raise AssertionError("collective called in a single process")

    for name in ("all_gather", "all_reduce", "get_world_size", "get_rank"):
        monkeypatch.setattr(dist, name, boom)
    inp = four_users(seq_scores=[[0.0, 1.0]] * 4, seq_all_scores=torch.ones(4, 40, dtype=torch.float64))
    NAPOLoss(share="reuse").train()(inp).loss.backward()
    NAPOLoss(share="reuse", borrowed_score="owner", distributed_margin="local", ema_in_eval=True).eval()(inp)
