"""Prompt templates per domain.

Template 0 of each domain is the fixed evaluation prompt (for music, S-DPO's LastFM wording, so
numbers are comparable with the papers). Training draws a template per example from a seeded RNG,
as S-DPO's protocol does; the other templates are napo_lab's own rewordings.
"""

from __future__ import annotations

from collections.abc import Sequence

HISTORY = "[HistoryHere]"
CANDIDATES = "[CansHere]"
COUNT = "[N]"

_WORDS = {
    # domain: (verb phrase, plural noun, singular noun, candidate noun)
    "music": ("listened some musics from these bands", "band or artist", "listen to", "band names"),
    "movie": ("watched these movies", "movie", "watch", "movie titles"),
    "book": ("read these books", "book", "read", "book titles"),
    "item": ("interacted with these items", "item", "choose", "item names"),
}


def templates(domain: str) -> list[str]:
    """All templates of a domain; index 0 is the evaluation template."""
    if domain not in _WORDS:
        raise ValueError(f"dataset.domain={domain!r} has no prompt templates; use one of {sorted(_WORDS)}")
    did, noun, act, cand = _WORDS[domain]
    return [
        f"This person has {did} {HISTORY} recently. Please predict the next {noun} this person will "
        f"{act}. Choose the answer from the following {COUNT} {cand}: {CANDIDATES}. Answer: ",
        f"Recently, this person has {did}: {HISTORY}. Which {noun} will this person {act} next? "
        f"Pick exactly one of these {COUNT} {cand}: {CANDIDATES}. Answer: ",
        f"Given that a user has {did} {HISTORY}, recommend the {noun} they are most likely to {act} "
        f"next, chosen from these {COUNT} {cand}: {CANDIDATES}. Answer: ",
        f"History: {HISTORY}. Candidates ({COUNT} {cand}): {CANDIDATES}. Reply with the one {noun} "
        f"this person will {act} next. Answer: ",
    ]


def _fill(part: str, candidates: Sequence[str]) -> str:
    return part.replace(CANDIDATES, ", ".join(candidates)).replace(COUNT, str(len(candidates)))


def render_spans(template: str, history: Sequence[str],
                 candidates: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Fill a template (titles joined with ', ' as in the papers) and return the character span of
    every history title in the text, oldest first: the SFT stage can put loss on those tokens."""
    if template.count(HISTORY) != 1:
        raise ValueError(f"a prompt template needs exactly one {HISTORY}: {template!r}")
    before, after = template.split(HISTORY)
    head = _fill(before, candidates)
    spans, pos = [], len(head)
    for title in history:
        spans.append((pos, pos + len(title)))
        pos += len(title) + 2
    return head + ", ".join(history) + _fill(after, candidates), spans


def render(template: str, history: Sequence[str], candidates: Sequence[str]) -> str:
    """Fill a template; titles are joined with ', ' as in the papers."""
    return render_spans(template, history, candidates)[0]


def wrap_chat(tokenizer, text: str, use_chat_template: bool) -> str:
    """Put the prompt in the model's chat format when it is an instruct model that has one."""
    if not use_chat_template or not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text.rstrip()}],
                                         add_generation_prompt=True, tokenize=False)
