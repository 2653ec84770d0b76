"""Generation matcher on tricky strings, S-DPO and LLaRA rules."""

import pytest

from napo_lab.metrics.matching import generation_metrics, match_llara, match_sdpo, matched_index

CANDS = ["Blur", "Blur Ill", "The Beatles", "Oasis"]


def test_substring_candidate_makes_row_invalid():
    # "Blur" is a substring of "Blur Ill": answering the longer title matches both.
    assert match_sdpo("Blur Ill", CANDS) == [0, 1]
    assert matched_index("Blur Ill", CANDS) == -1
    assert matched_index("Blur", CANDS) == 0


def test_case_sensitivity():
    assert match_sdpo("the beatles", CANDS) == []
    assert match_llara("the beatles", CANDS) == [2]
    assert match_llara("THE BEATLES", ["  the Beatles "]) == [0]


def test_trailing_text_and_lines():
    assert match_sdpo("The Beatles</s> and more", CANDS) == [2]
    assert match_sdpo("The Beatles\nOasis", CANDS) == [2, 3]  # whole text
    assert match_llara("  The Beatles\nOasis", CANDS) == [2]  # first line only
    assert match_llara("\n\nOasis\nBlur", CANDS) == [3]  # stripped before the split


def test_empty_output():
    assert match_sdpo("", CANDS) == [] and match_llara("", CANDS) == []
    assert matched_index("", CANDS, "llara") == -1


def test_unknown_rule():
    with pytest.raises(ValueError):
        matched_index("x", CANDS, "exact")  # type: ignore[arg-type]


def test_generation_metrics_hand_worked():
    cands = ["Blur", "The Beatles", "Oasis"]
    rows = [
        ("The Beatles", 1),  # both rules: valid hit
        ("the beatles", 1),  # S-DPO: invalid; LLaRA: valid hit
        ("Blur and Oasis", 0),  # both: two matches, invalid
        ("Oasis", 0),  # both: valid miss
        ("", 2),  # both: invalid
    ]
    m = generation_metrics([g for g, _ in rows], [cands] * len(rows), [t for _, t in rows])
    assert m["n"] == 5
    assert m["hr@1"] == pytest.approx(1 / 5)
    assert m["valid_ratio"] == pytest.approx(2 / 5) and m["n_valid"] == 2
    assert m["valid_ratio_llara"] == pytest.approx(3 / 5) and m["n_valid_llara"] == 3
    assert m["hr@1_valid"] == pytest.approx(2 / 3)


def test_generation_metrics_no_valid_and_empty():
    m = generation_metrics(["", "nothing"], [["a b"], ["a b"]], [0, 0])
    assert m["hr@1"] == m["hr@1_valid"] == m["valid_ratio"] == 0.0 and m["n_valid_llara"] == 0
    e = generation_metrics([], [], [])
    assert e["n"] == 0 and e["hr@1"] == 0.0 and e["hr@1_valid"] == 0.0


def test_generation_metrics_bad_input():
    with pytest.raises(ValueError):
        generation_metrics(["a"], [["a"]], [0, 1])
    with pytest.raises(ValueError):
        generation_metrics(["a"], [["a"]], [3])
