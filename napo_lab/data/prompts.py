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


RATED_SEP = "\n "  # RecPO's prompt: one "Title | Rating: r" entry per line (and one candidate per line)


def rated_templates(domain: str) -> list[str]:
    """Templates of a history shown with ratings, RecPO's prompt shape: the history as "Title | Rating:
    r" lines, a request for a highly rated (4 to 5) next choice, the candidates one per line. The
    wording is napo_lab's; as many templates as :func:`templates`, index 0 for evaluation."""
    if domain not in _WORDS:
        raise ValueError(f"dataset.domain={domain!r} has no prompt templates; use one of {sorted(_WORDS)}")
    did, noun, act, cand = _WORDS[domain]
    fmt = f"[{noun.split()[0].capitalize()}Title] | Rating: [1-5]"
    return [
        f"This user has {did} recently and rated them (format: {fmt}):"
        f"\n {HISTORY}\n Predict the next {noun} this user will {act} and rate highly (4 to 5), choosing "
        f"from these {COUNT} {cand}:\n {CANDIDATES}.\n Answer: ",
        f"The user's recent {noun} history with ratings ({fmt}):\n {HISTORY}\n Which {noun} will they "
        f"{act} next and rate highly (4 to 5)? Pick one of these {COUNT} {cand}:\n {CANDIDATES}.\n Answer: ",
        f"Ratings this user gave recently ({fmt}):\n {HISTORY}\n Recommend the {noun} they will most "
        f"likely {act} next and rate 4 to 5, from these {COUNT} {cand}:\n {CANDIDATES}.\n Answer: ",
        f"History with ratings ({fmt}):\n {HISTORY}\n Candidates ({COUNT} {cand}):\n {CANDIDATES}.\n "
        f"Reply with the one {noun} this user will {act} next and rate highly. Answer: ",
    ]


def _fill(part: str, candidates: Sequence[str], sep: str = ", ") -> str:
    return part.replace(CANDIDATES, sep.join(candidates)).replace(COUNT, str(len(candidates)))


def render_spans(template: str, history: Sequence[str], candidates: Sequence[str],
                 ratings: Sequence[int] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """Fill a template (titles joined with ', ' as in the papers; with ``ratings``, RecPO's "Title |
    Rating: r" entries one per line) and return the character span of every history title in the
    text, oldest first: the SFT stage can put loss on those tokens."""
    if template.count(HISTORY) != 1:
        raise ValueError(f"a prompt template needs exactly one {HISTORY}: {template!r}")
    sep = ", " if ratings is None else RATED_SEP
    suffixes = [""] * len(history) if ratings is None else [f" | Rating: {int(r)}" for r in ratings]
    if len(suffixes) != len(history):
        raise ValueError(f"{len(history)} history titles but {len(suffixes)} ratings")
    before, after = template.split(HISTORY)
    head = _fill(before, candidates, sep)
    spans, pos, entries = [], len(head), []
    for title, suffix in zip(history, suffixes):
        spans.append((pos, pos + len(title)))
        entries.append(title + suffix)
        pos += len(entries[-1]) + len(sep)
    return head + sep.join(entries) + _fill(after, candidates, sep), spans


def render(template: str, history: Sequence[str], candidates: Sequence[str],
           ratings: Sequence[int] | None = None) -> str:
    """Fill a template; titles are joined with ', ' as in the papers (see render_spans)."""
    return render_spans(template, history, candidates, ratings)[0]


def wrap_chat(tokenizer, text: str, use_chat_template: bool) -> str:
    """Put the prompt in the model's chat format when it is an instruct model that has one."""
    if not use_chat_template or not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text.rstrip()}],
                                         add_generation_prompt=True, tokenize=False)
