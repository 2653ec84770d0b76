"""RecPO as its authors run it: candidate scores, the row filter, the two margin forms, lambda = 0 == S-DPO,
RecPO's negative selections and its prompt. Every expected value is computed by hand (plain Python)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napo_lab.data.examples import PrepReport
from napo_lab.data.prompts import RATED_SEP, rated_templates, render_spans
from napo_lab.data.samplers import NegativeSampler
from napo_lab.data.sources.recpo import (
    DEFAULTS,
    candidate_score,
    future_candidates,
    last_rows,
    top_future,
    train_rows,
)
from napo_lab.losses.recpo import RecPOLoss
from napo_lab.losses.sdpo import SDPOLoss
from napo_lab.losses.testing import make_inputs


# ----------------------------------------------------------------------------------------- scores
def test_candidate_score_by_hand():
    assert candidate_score(4, 0) == 4.0  # the very next item keeps its rating
    assert candidate_score(5, 3) == 2.5  # 5 / sqrt(4)
    assert candidate_score(3, 10) == 0.9045  # a random fill: 3 / sqrt(11) = 0.90453... rounded to 4 decimals
    assert candidate_score(2, 1) == 1.4142
    assert list(candidate_score([1, 4], [0, 15])) == [1.0, 1.0]


def test_top_future_and_ties_go_to_the_earlier_step():
    # scores 2, 5/sqrt(2) = 3.5355, 4/sqrt(3) = 2.3094: the later, better-rated item wins
    assert top_future([2, 5, 4], 0.5) == 1
    # 2/1 = 2 and 4/sqrt(4) = 2 tie: the earlier step
    assert top_future([2, 1, 1, 4], 0.5) == 0


def test_future_candidates_scores_flags_and_chosen():
    s = dict(DEFAULTS)
    rng = np.random.default_rng(0)
    chosen, cands, scores, rated = future_candidates([10, 11, 12], [2, 5, 4], [20, 21], 5, s, rng)
    assert chosen == 11
    by_item = dict(zip(cands, scores))
    assert by_item == {10: 2.0, 11: 3.5355, 12: 2.3094, 20: 0.9045, 21: 0.9045}
    assert dict(zip(cands, rated)) == {10: True, 11: True, 12: True, 20: False, 21: False}
    assert sorted(cands) == [10, 11, 12, 20, 21]  # shuffled, each once


def test_train_row_filter_history_and_chosen_rating():
    cfg = {"min_history": 3, "max_history": 10, "n_candidates": 4, "seed": 0}
    s = {**DEFAULTS, "max_train_rows": None}
    # user 0: 7 items; rows at t = 5, 6 (>= 5 history items). Future from t=5: ratings [5, 2] -> chosen rating 5
    # (kept); from t=6: [2] -> chosen rating 2 (dropped). User 1 has only 5 items: t = 5 is the end, no row.
    seqs = {0: [1, 2, 3, 4, 5, 6, 7], 1: [8, 9, 10, 11, 12]}
    ratings = {0: [3, 3, 3, 3, 3, 5, 2], 1: [5, 5, 5, 5, 5]}
    report = PrepReport()
    rows = train_rows(seqs, ratings, 100, cfg, s, report)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["target"] == 6 and list(row["history"]) == [1, 2, 3, 4, 5]
    assert list(row["history_ratings"]) == [3, 3, 3, 3, 3]
    by_item = dict(zip(row["candidates"], row["candidate_scores"]))
    assert by_item[6] == 5.0 and by_item[7] == round(2 / math.sqrt(2), 4)
    fills = [c for c, r in zip(row["candidates"], row["candidate_rated"]) if not r]
    assert len(fills) == 2 and not set(fills) & set(seqs[0]) and all(by_item[f] == 0.9045 for f in fills)
    assert report.warnings["recpo/train_rows_chosen_rating_below_threshold_dropped"] == 1


def test_test_rows_keep_targets_rated_4_or_more():
    cfg = {"max_history": 3}
    rows = last_rows({0: [1, 2, 3, 4], 1: [5, 6, 7]}, {0: [1, 2, 3, 4], 1: [5, 5, 3]}, cfg, DEFAULTS, "test",
                     PrepReport())
    assert rows["user"].tolist() == [0]
    assert list(rows.iloc[0]["history"]) == [1, 2, 3] and list(rows.iloc[0]["history_ratings"]) == [1, 2, 3]


# ------------------------------------------------------------------------------------------- loss
POLICY = [[-1.0, -2.0, -3.0, -1.5]]
REF = [[-1.2, -1.8, -2.5, -1.5]]  # h = policy - ref = [0.2, -0.2, -0.5, 0.0]
SCORES = torch.tensor([[4.0, 2.0, 0.9045, 1.0]], dtype=torch.float64)  # float64: 0.9045 exactly as typed


def test_ratio_margin_by_hand():
    loss = RecPOLoss(beta=1.0, margin=2.0, margin_mode="score_ratio")
    out = loss(make_inputs(POLICY, REF, pref_scores=SCORES))
    logits = [(-0.2 - 0.2) + 2 * 4 / 2, (-0.5 - 0.2) + 2 * 4 / 0.9045, (0.0 - 0.2) + 2 * 4 / 1]
    expected = math.log(1 + sum(math.exp(x) for x in logits))
    assert out.loss.item() == pytest.approx(expected, abs=1e-12)
    assert out.metrics["recpo/margin"].item() == pytest.approx((4 + 8 / 0.9045 + 8) / 3, abs=1e-12)


def test_log_diff_margin_by_hand_and_a_literal():
    loss = RecPOLoss(beta=0.5, margin=2.0, margin_mode="score_log_diff")
    out = loss(make_inputs(POLICY, REF, pref_scores=SCORES))
    logits = [0.5 * (-0.4) + 2 * math.log(1 + 2.0), 0.5 * (-0.7) + 2 * math.log(1 + 4 - 0.9045),
              0.5 * (-0.2) + 2 * math.log(1 + 3.0)]
    assert out.loss.item() == pytest.approx(math.log(1 + sum(math.exp(x) for x in logits)), abs=1e-12)
    # K = 1, equal log-ratios, s_w = 2, s_k = 1, lambda = 1: log(1 + e^{2/1}) for the ratio form
    one = RecPOLoss(beta=1.0, margin=1.0, margin_mode="score_ratio")(
        make_inputs([[0.0, 0.0]], [[0.0, 0.0]], pref_scores=[[2.0, 1.0]]))
    assert one.loss.item() == pytest.approx(2.1269280110429727, abs=1e-12)


@pytest.mark.parametrize("mode", ["score_ratio", "score_log_diff"])
def test_lambda_zero_is_sdpo_exactly(mode):
    mask = [[True, True, False, True], [True, True, True, True]]
    policy = [[-1.0, -2.0, 5.0, -1.5], [-3.0, -1.0, -2.0, -4.0]]
    ref = [[-1.2, -1.8, 0.0, -1.5], [-2.0, -1.5, -2.5, -3.0]]
    scores = [[4.0, 2.0, float("nan"), 1.0], [5.0, 1.0, 0.9045, 2.5]]
    a = RecPOLoss(beta=0.7, margin=0.0, margin_mode=mode)(make_inputs(policy, ref, mask=mask, pref_scores=scores))
    b = SDPOLoss(beta=0.7)(make_inputs(policy, ref, mask=mask))
    assert torch.equal(a.loss, b.loss)


def test_finite_at_huge_gaps_and_gradient_flows():
    inputs = make_inputs([[-1000.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], pref_scores=[[5.0, 0.5, 0.9045]],
                         dtype=torch.float32)
    out = RecPOLoss(margin=2.0, margin_mode="score_ratio")(inputs)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(inputs.policy_logps.grad).all()


def test_unusable_scores_are_refused_masked_ones_ignored():
    loss = RecPOLoss(margin=2.0, margin_mode="score_ratio")
    with pytest.raises(ValueError, match="no usable score"):
        loss(make_inputs(POLICY, REF, pref_scores=[[4.0, 0.0, 1.0, 1.0]]))
    ok = loss(make_inputs(POLICY, REF, mask=[[True, True, False, True]], pref_scores=[[4.0, 2.0, float("nan"), 1.0]]))
    assert torch.isfinite(ok.loss)
    with pytest.raises(ValueError, match="pref_scores"):
        loss(make_inputs(POLICY, REF))
    assert loss.needs_pref_scores and not RecPOLoss().needs_pref_scores


# ------------------------------------------------------------------------------------ negatives
def test_recpo_negative_selections():
    cands = [1, 2, 3, 4, 5, 6]
    rated = [True, True, True, False, False, True]  # 1 is the chosen target; rated negatives 2, 3, 6
    s = NegativeSampler("recpo_rating", 3, 50, np.zeros(50))
    assert sorted(s.sample(0, 0, [9], 1, cands, rated)) == [2, 3, 6]
    s = NegativeSampler("recpo_random", 3, 50, np.zeros(50))
    assert sorted(s.sample(0, 0, [9], 1, cands, rated)) == [4, 5]  # fewer than K: all of them (one masked)
    # no random fill at all (>= 20 future items): the other candidates are the pool
    assert set(s.sample(0, 0, [9], 1, cands, [True] * 6)) <= {2, 3, 4, 5, 6}
    s = NegativeSampler("in_prompt", 3, 50, np.zeros(50))  # RecPO's `both`
    assert set(s.sample(0, 0, [9], 1, cands, rated)) <= {2, 3, 4, 5, 6}
    with pytest.raises(ValueError, match="RecPO's candidate rows"):
        NegativeSampler("recpo_rating", 3, 50, np.zeros(50)).sample(0, 0, [9], 1, cands)


# ---------------------------------------------------------------------------------------- prompt
def test_rated_prompt_shows_title_bar_rating_lines():
    text, spans = render_spans(rated_templates("movie")[0], ["Heat", "Up"], ["A", "B"], [5, 2])
    assert f"Heat | Rating: 5{RATED_SEP}Up | Rating: 2" in text
    assert "highly (4 to 5)" in text and text.endswith("Answer: ")
    assert [text[a:b] for a, b in spans] == ["Heat", "Up"]
    assert f"A{RATED_SEP}B" in text
