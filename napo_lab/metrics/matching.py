"""Map a generated answer to one of the prompt's candidates (evaluation by generation).

Two published rules exist and give different numbers, so both are implemented and every metric
says which rule produced it:

* S-DPO / NAPO code: a candidate matches when its title is a substring of the generated text,
  case-sensitive, anywhere in the text (trailing text after the title is allowed).
  HR@1 = hits / all rows, ValidRatio = valid / all rows. (S-DPO's script cuts the prompt off the
  decoded full sequence by character count; here ``generated`` is the decoded completion alone.)
* LLaRA code: the generated text is stripped and only its first line is kept; both sides are
  lower-cased and stripped before the same substring test. HR@1 = hits / valid rows
  (conditional on a valid answer), 0.0 when no row is valid.

Under both rules a row is *valid* when exactly one candidate matches, and a *hit* when it is valid
and that candidate is the target. Matching is by candidate position, so two candidates with the
same title (MovieLens has duplicates) both match and make the row invalid, which is what the
title-based original code does too. An empty candidate title is a substring of every text and
therefore always matches (faithful to the original rule; prepared data never has empty titles).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Rule = Literal["sdpo", "llara"]


def match_sdpo(generated: str, candidates: Sequence[str]) -> list[int]:
    """Indices of candidates whose exact title occurs in ``generated`` (S-DPO rule)."""
    return [i for i, title in enumerate(candidates) if title in generated]


def _llara_text(generated: str) -> str:
    """LLaRA's normalisation of the answer: first line of the stripped text, lower-cased."""
    return generated.strip().split("\n")[0].strip().lower()


def match_llara(generated: str, candidates: Sequence[str]) -> list[int]:
    """Indices of candidates matched under LLaRA's rule (first line, case-insensitive)."""
    text = _llara_text(generated)
    return [i for i, title in enumerate(candidates) if title.strip().lower() in text]


def matched_index(generated: str, candidates: Sequence[str], rule: Rule = "sdpo") -> int:
    """Position of the single matched candidate, or -1 when none or several match.

    This is the per-row value the predictions table stores (after mapping to an item id), so
    that metrics can be recomputed from the table alone.
    """
    if rule == "sdpo":
        found = match_sdpo(generated, candidates)
    elif rule == "llara":
        found = match_llara(generated, candidates)
    else:
        raise ValueError(f"unknown matching rule {rule!r} (expected 'sdpo' or 'llara')")
    return found[0] if len(found) == 1 else -1


def generation_metrics(
    generated: Sequence[str],
    candidates: Sequence[Sequence[str]],
    target_index: Sequence[int],
) -> dict[str, float | int]:
    """HR@1 and ValidRatio under both rules, each under its own name.

    Returns ``hr@1`` (S-DPO: hits / all), ``valid_ratio`` (S-DPO: valid / all), ``n_valid``
    (S-DPO valid rows), ``hr@1_valid`` (LLaRA: hits / valid, 0.0 if no row is valid),
    ``valid_ratio_llara``, ``n_valid_llara`` and ``n`` (rows). With no rows every ratio is 0.0.
    """
    if not (len(generated) == len(candidates) == len(target_index)):
        raise ValueError(
            f"length mismatch: {len(generated)} generated, {len(candidates)} candidate lists, "
            f"{len(target_index)} targets"
        )
    n = len(generated)
    hits = valid = hits_llara = valid_llara = 0
    for text, cands, target in zip(generated, candidates, target_index):
        if not 0 <= int(target) < len(cands):
            raise ValueError(f"target index {target} outside a list of {len(cands)} candidates")
        sdpo = matched_index(text, cands, "sdpo")
        llara = matched_index(text, cands, "llara")
        valid += sdpo >= 0
        hits += sdpo == int(target)
        valid_llara += llara >= 0
        hits_llara += llara == int(target)
    return {
        "hr@1": hits / n if n else 0.0,
        "valid_ratio": valid / n if n else 0.0,
        "n_valid": int(valid),
        "hr@1_valid": hits_llara / valid_llara if valid_llara else 0.0,
        "valid_ratio_llara": valid_llara / n if n else 0.0,
        "n_valid_llara": int(valid_llara),
        "n": n,
    }
