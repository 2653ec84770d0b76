"""Every metric from a predictions table alone, so none needs the model to be rerun.

The table is the one every run writes as ``predictions_<role>.parquet``, LLM or sequential model:
columns user, target, candidates (item ids), scores (one float per candidate, or an empty list when
the run only generated), generated (text, may be empty), matched (the answer's item id, -1 none).
An optional ``scores_norm`` column (length-normalised log-likelihoods) gives ``rank_norm/`` metrics.

The *answer* of a row (what ``hr@1``, ``valid_ratio``, ``pop/*@1`` and ``band/*`` judge) comes from:

* ``answers="text"``: the generated text, matched to the candidates (S-DPO's and LLaRA's rules);
* ``answers="top1"``: the best-scored candidate (a sequential model always answers one of them, so
  every row is valid under both rules and ``hr@1`` equals ``rank/hr@1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from napo_lab.metrics.matching import generation_metrics, matched_index
from napo_lab.metrics.popularity import hr_by_band, popularity_metrics
from napo_lab.metrics.ranking import prefix_keys, ranking_metrics, ranks, topk_items


def _score_matrix(pred: pd.DataFrame, column: str, n_cands: int) -> np.ndarray | None:
    """[N, C] matrix when every row has one score per candidate, else None (not scored)."""
    if column not in pred or len(pred) == 0:
        return None
    rows = [np.asarray(s if s is not None else [], dtype=np.float64) for s in pred[column]]
    if any(r.shape != (n_cands,) for r in rows):
        return None
    return np.stack(rows)


def _position(candidates: np.ndarray, target: int) -> int:
    where = np.flatnonzero(candidates == target)
    if where.shape[0] != 1:
        raise ValueError(f"target {target} appears {where.shape[0]} times in its candidate list")
    return int(where[0])


def _always_valid(hits: np.ndarray) -> dict[str, float | int]:
    """The generation family for a model whose every answer is a candidate (valid under both rules)."""
    n = int(hits.shape[0])
    hr = float(hits.mean()) if n else 0.0
    return {"hr@1": hr, "valid_ratio": 1.0 if n else 0.0, "n_valid": n, "hr@1_valid": hr,
            "valid_ratio_llara": 1.0 if n else 0.0, "n_valid_llara": n, "n": n}


def answer_ids(pred: pd.DataFrame, titles: Sequence[str], answers: str) -> list[int]:
    """The ``matched`` column: each row's answer as an item id (-1 when the text names no single
    candidate). Ranking ties are broken against the target, exactly as the rank metrics do."""
    cands = np.stack([np.asarray(c, dtype=np.int64) for c in pred["candidates"]]) if len(pred) else \
        np.zeros((0, 0), dtype=np.int64)
    if answers == "top1":
        target_pos = np.argmax(cands == pred["target"].to_numpy()[:, None], axis=1)
        return topk_items(np.stack(pred["scores"].to_numpy()), cands, 1, target_pos)[:, 0].tolist() if len(cands) else []
    pos = [matched_index(text, [titles[c] for c in row], "sdpo") for text, row in zip(pred["generated"], cands)]
    return [int(row[i]) if i >= 0 else -1 for i, row in zip(pos, cands)]


def metrics_from_predictions(
    pred: pd.DataFrame,
    titles: Sequence[str],
    train_counts: np.ndarray | None = None,
    item_band: np.ndarray | None = None,
    tail_ratio: float = 0.2,
    ks: Iterable[int] = (1, 5, 10),
    pop_ks: Iterable[int] = (1, 10),
    generation: bool | None = None,
    answers: str = "text",
) -> dict[str, float | int]:
    """Unprefixed metrics of one split; prefix them with ``prefix_keys(d, split)``.

    Generation (when ``generation`` is True, or None and some row has generated text):
    ``hr@1``, ``hr@1_valid``, ``valid_ratio``, ... (see generation_metrics), with the match
    recomputed from the text under S-DPO's rule for ``pop/<metric>@1`` and ``band/<band>/hr@1``.
    Scoring (when every row has one score per candidate): ``rank/hr@K``, ``rank/ndcg@K``,
    ``rank/mrr``, ``rank/pop/<metric>@K`` for K in pop_ks, ``rank/band/<band>/hr@1``, and the same
    under ``rank_norm/`` from ``scores_norm``. Popularity needs ``train_counts``, bands ``item_band``.
    """
    cands = [np.asarray(c, dtype=np.int64) for c in pred["candidates"]]
    widths = {c.shape[0] for c in cands}
    if len(widths) > 1:
        raise ValueError(f"rows have different numbers of candidates: {sorted(widths)}")
    n_cands = widths.pop() if widths else 0
    cand_ids = np.stack(cands) if cands else np.zeros((0, 0), dtype=np.int64)
    targets = pred["target"].to_numpy(dtype=np.int64)
    target_pos = np.array([_position(c, t) for c, t in zip(cand_ids, targets)], dtype=np.int64)
    out: dict[str, float | int] = {}

    texts = [t if isinstance(t, str) else "" for t in pred.get("generated", pd.Series([""] * len(pred)))]
    if answers not in ("text", "top1"):
        raise ValueError(f"answers={answers!r}; use text or top1")
    if generation is None:
        generation = any(texts) or answers == "top1"
    if generation:
        if answers == "text":
            cand_titles = [[titles[i] for i in row] for row in cand_ids]
            out.update(generation_metrics(texts, cand_titles, target_pos.tolist()))
            pos = np.array([matched_index(t, c, "sdpo") for t, c in zip(texts, cand_titles)], dtype=np.int64)
            matched = np.where(pos >= 0, cand_ids[np.arange(len(pos)), np.maximum(pos, 0)], -1)
        else:
            scores = _score_matrix(pred, "scores", n_cands)
            if scores is None:
                raise ValueError("answers=top1 needs one score per candidate in every row")
            matched = topk_items(scores, cand_ids, 1, target_pos)[:, 0] if len(cand_ids) else np.zeros(0, np.int64)
            out.update(_always_valid(matched == targets))
        if train_counts is not None:
            out.update(prefix_keys(popularity_metrics(matched[:, None], train_counts, tail_ratio, 1), "pop"))
        if item_band is not None:
            out.update(prefix_keys(hr_by_band(matched == targets, targets, item_band), "band"))

    for column, name in (("scores", "rank"), ("scores_norm", "rank_norm")):
        scores = _score_matrix(pred, column, n_cands)
        if scores is None:
            continue
        out.update(prefix_keys(ranking_metrics(scores, target_pos, ks), name))
        if train_counts is not None:
            for k in pop_ks:
                top = topk_items(scores, cand_ids, k, target_pos)
                out.update(prefix_keys(popularity_metrics(top, train_counts, tail_ratio, k), f"{name}/pop"))
        if item_band is not None:
            hits = ranks(scores, target_pos) == 1
            out.update(prefix_keys(hr_by_band(hits, targets, item_band), f"{name}/band"))
    return out
