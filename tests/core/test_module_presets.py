"""Loss presets run through the real ``RecLitModule`` on hand-built batches.

The language model is a stand-in whose log-probs are known exactly: every completion is one token,
and the model's next-token logits are a trainable vector ``w`` whatever the context, so
``s(token) = w[token] - log sum_v e^{w_v}``. The sequential model is a stand-in too: a user's
history row starts with the user's index, which selects a hand-set user state and a hand-set score
for every item. Everything else (scoring the completions, the sequential-model gather, building
``LossInputs``, the loss from its yaml preset) is the code a real run uses.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from napo_lab.lit.module import RecLitModule

CONF = Path(__file__).resolve().parents[2] / "conf" / "loss"
LN = math.log


class ContextFreeLM(nn.Module):
    """Next-token logits ``w`` at every position (a bias-only LM): ``s(t) = w[t] - logsumexp(w)``."""

    def __init__(self, w: list[float]):
        super().__init__()
        self.head = nn.Linear(1, len(w), bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor(w).view(-1, 1))
        self.config = SimpleNamespace(_attn_implementation="eager")

    def get_decoder(self):
        def decoder(input_ids, **_):
            return SimpleNamespace(last_hidden_state=torch.ones(*input_ids.shape, 1))

        return decoder

    def get_output_embeddings(self):
        return self.head


class TableSeqRec(nn.Module):
    """``history[:, 0]`` is the user's index: its state and its score of every item are table rows,
    the scores multiplied by ``scale`` (the test changes it between steps)."""

    def __init__(self, states: list[list[float]], scores: list[list[float]]):
        super().__init__()
        self.register_buffer("states", torch.tensor(states))
        self.register_buffer("table", torch.tensor(scores))
        self.scale = 1.0

    def user_states(self, history):
        return self.states[history[:, 0]]

    def scores(self, history):
        return self.scale * self.table[history[:, 0]]


def batch(item_ids: list[list[int]], mask=None) -> dict:
    """One prompt token (12) per user; completion m of user b is the single token item_ids[b][m];
    user b's history row is [b, -1]."""
    ids = torch.tensor(item_ids)
    b = ids.shape[0]
    return {
        "prompt_ids": [[12]] * b,
        "completion_ids": [[[max(i, 0)] for i in row] for row in item_ids],
        "item_ids": ids,
        "mask": ids >= 0 if mask is None else torch.tensor(mask),
        "history": torch.tensor([[u, -1] for u in range(b)]),
    }


def module(loss, lm, seqrec, train_counts=None) -> RecLitModule:
    return RecLitModule(lm, loss, pad_id=12, optim={}, layout="duplicate", stage="preference",
                        seqrec=seqrec, train_counts=train_counts)


def preset(name: str):
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml").objective)


# --------------------------------------------------------------------------- napo_official, 3 steps

# 4 users, K = 2. User u's positive is item 3u, its negatives 3u+1 and 3u+2 (token = item id; token
# 12 is the prompt). w = 0 for the positives and the prompt token, ln x for the negatives with
#   x: u0 (1, 1), u1 (2, 1), u2 (1, 3), u3 (2, 2)
# so sum_v e^{w_v} = 4 + 13 + 1 = 18 and s_neg - s_pos = ln x.
X = {1: 1, 2: 1, 4: 2, 5: 1, 7: 1, 8: 3, 10: 2, 11: 2}
W = [LN(X[t]) if t in X else 0.0 for t in range(13)]
ITEMS = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
# States (dot products: u0.u1 0, u0.u2 1, u0.u3 2, u1.u2 2, u1.u3 -1, u2.u3 0). rho = 0.7, N = 4:
# int(0.7 * 3) = int(2.0999999999999996) = 2 neighbours:
#   u0 <- u3, u2     u1 <- u2, u0     u2 <- u1, u0     u3 <- u0, u2
STATES = [[1.0, 0.0], [0.0, 1.0], [1.0, 2.0], [2.0, -1.0]]
# The sequential model's score of each user's own negatives: u0 (0, 2), u1 (1, 3), u2 (-1, 1),
# u3 (4, 6); its positive 9; every other item (another user's negatives included) 0.
OWN = {0: (0.0, 2.0), 1: (1.0, 3.0), 2: (-1.0, 1.0), 3: (4.0, 6.0)}
SCORES = [[9.0 if i == 3 * u else OWN[u][i - 3 * u - 1] if i in (3 * u + 1, 3 * u + 2) else 0.0
           for i in range(12)] for u in range(4)]


def official_expected():
    """The official code's rules (trainer/softmax_dpo_trainer.py, branch master), by hand:

    * candidates of user i: its own 2 negatives + its neighbours' 2 negatives each, with the
      log-probs computed for their owners (reuse) -> S_i = sum over candidates of x:
      S0 = 2 + 4 (u3) + 4 (u2) = 10, S1 = 3 + 4 + 2 = 9, S2 = 4 + 3 + 2 = 9, S3 = 4 + 2 + 4 = 10
    * M_batch = mean of the candidates' scores for their OWNER:
      u0 2 + 10 + 0 = 12, u1 4 + 0 + 2 = 6, u2 0 + 4 + 2 = 6, u3 10 + 2 + 0 = 12 -> 36 / 24 = 1.5
      (scaled by the step's scale c: 1, 3, -1 -> M = 1.5, 4.5, -1.5)
    * EMA updated first (M_0 = 0, m = 0.9), also in the eval step 3; gamma = 1 - 0.3 (M - EMA):
      step 1: EMA 0.15,   gamma = 1 - 0.3 (1.5 - 0.15)    = 0.595
      step 2: EMA 0.585,  gamma = 1 - 0.3 (4.5 - 0.585)   = -0.1745
      step 3: EMA 0.3765, gamma = 1 - 0.3 (-1.5 - 0.3765) = 1.56295
    * loss = mean_i log(1 + e^gamma S_i) = (2 log(1 + 10 e^gamma) + 2 log(1 + 9 e^gamma)) / 4
    """
    out = []
    for gamma, ema, m in ((0.595, 0.15, 1.5), (-0.1745, 0.585, 4.5), (1.56295, 0.3765, -1.5)):
        loss = (2 * math.log1p(10 * math.exp(gamma)) + 2 * math.log1p(9 * math.exp(gamma))) / 4
        out.append({"m": m, "ema": ema, "gamma": gamma, "loss": loss})
    return out


def test_napo_official_preset_in_the_module_follows_the_official_code_over_three_steps():
    lm = ContextFreeLM(W)
    seqrec = TableSeqRec(STATES, SCORES)
    mod = module(preset("napo_official"), lm, seqrec)
    expected = official_expected()
    for step, (scale, mode) in enumerate(((1.0, "train"), (3.0, "train"), (-1.0, "eval"))):
        seqrec.scale = scale
        mod.train(mode == "train")
        lm.zero_grad()
        if mode == "train":
            out = mod.compute_loss(batch(ITEMS))
            out.loss.backward()
        else:
            with torch.no_grad():
                out = mod.compute_loss(batch(ITEMS))
        exp = expected[step]
        assert out.metrics["napo/n_neighbours"].item() == 2
        assert out.metrics["napo/m_batch"].item() == pytest.approx(exp["m"], rel=1e-6), step
        assert out.metrics["napo/ema"].item() == pytest.approx(exp["ema"], rel=1e-6), step
        assert out.metrics["napo/gamma"].item() == pytest.approx(exp["gamma"], rel=1e-5), step
        assert out.loss.item() == pytest.approx(exp["loss"], rel=1e-6), step
        if step == 0:
            # Only the positives get gradient (every negative is detached). With p_i = e^g S_i /
            # (1 + e^g S_i), dL/ds_pos_i = -p_i / 4 and ds_pos_i/dw_t = [t = pos_i] - e^{w_t} / 18:
            #   dL/dw_t = -p_{u}/4 [t = pos of u] + (sum_i p_i / 4) e^{w_t} / 18.
            e = math.exp(exp["gamma"])
            p = [e * s / (1 + e * s) for s in (10, 9, 9, 10)]
            want = [(sum(p) / 4) * math.exp(W[t]) / 18 - (p[t // 3] / 4 if t < 12 and t % 3 == 0 else 0.0)
                    for t in range(13)]
            torch.testing.assert_close(lm.head.weight.grad.view(-1), torch.tensor(want), rtol=1e-5, atol=1e-7)
    assert int(mod.loss_fn.margin.steps) == 3


def test_napo_fixed_preset_scores_borrowed_negatives_for_the_borrower():
    """The same step 1 with borrowed_score=borrower (napo's choice): a borrowed item's score is the
    borrower's (0 here), so M_batch = (2 + 4 + 0 + 10) / 24 = 2/3, not the owner's 1.5."""
    loss = preset("napo_official")
    loss.borrowed_score = "borrower"
    mod = module(loss, ContextFreeLM(W), TableSeqRec(STATES, SCORES))
    mod.train()
    out = mod.compute_loss(batch(ITEMS))
    assert out.metrics["napo/m_batch"].item() == pytest.approx(2 / 3, rel=1e-6)
    assert out.metrics["napo/gamma"].item() == pytest.approx(1 - 0.3 * (2 / 3 - 0.1 * 2 / 3), rel=1e-5)


# --------------------------------------------------------------------------- unknown item ids


def test_module_gives_unknown_items_no_score_and_rosepo_takes_eps_fallback():
    """One user, K = 2: positive item 3, negatives item -1 (valid slot: an item outside the
    catalogue) and item 5. The sequential model scores item 0 at 3 (what a clamped gather would read
    for id -1), item 3 at 0 and item 5 at 1. Tokens: the -1 completion is token 0.
    w: token 3 -> 0, token 0 -> -1, token 5 -> -0.5, and RosePO without a reference, so
    D = s_w - s_l = 1 and 0.5:
      eps = [0.1 (fallback), 0.3 sigmoid(1)] -> loss = (cdpo(1, 0.1) + cdpo(0.5, 0.219318)) / 2
    with cdpo(D, eps) = -(1 - eps) log sigmoid(D) - eps log sigmoid(-D) -> 0.498499 (0.591385 if
    item 0's score were read)."""
    from napo_lab.losses import RosePOLoss

    w = [0.0] * 13
    w[0], w[5] = -1.0, -0.5
    scores = [[0.0] * 12]
    scores[0][0], scores[0][5] = 3.0, 1.0
    seqrec = TableSeqRec([[1.0]], scores)
    counts = torch.arange(12, dtype=torch.float32) + 10
    mod = module(RosePOLoss(use_reference=False, smoothing_source="seqrec"), ContextFreeLM(w), seqrec, counts)
    seen = {}
    original = mod.loss_fn.forward

    def spy(inputs):
        seen["inputs"] = inputs
        return original(inputs)

    mod.loss_fn.forward = spy
    out = mod.compute_loss(batch([[3, -1, 5]], mask=[[True, True, True]]))
    inputs = seen["inputs"]
    assert inputs.seq_scores[0, 1].isnan() and inputs.seq_scores[0, 2].item() == 1.0
    assert inputs.popularity[0, 1].isnan() and inputs.popularity[0, 0].item() == 13.0

    def log_sigmoid(x):
        return -math.log1p(math.exp(-x))

    def cdpo(d, eps):
        return -(1 - eps) * log_sigmoid(d) - eps * log_sigmoid(-d)

    eps2 = 0.3 / (1 + math.exp(-1.0))
    assert out.metrics["rosepo/eps"].item() == pytest.approx((0.1 + eps2) / 2, rel=1e-6)
    assert out.loss.item() == pytest.approx((cdpo(1.0, 0.1) + cdpo(0.5, eps2)) / 2, rel=1e-6)
    assert out.loss.item() == pytest.approx(0.498499, abs=1e-6)
