"""The evaluator: rows of a role -> a predictions table -> metrics (and ``predictions_<role>.parquet``).

A predictor fills the table's model columns for the rows it is given:

* ``LLMPredictor``: ``generated`` (greedy answers, eval.protocol generation / both) and ``scores`` /
  ``scores_norm`` (title log-likelihoods, ranking / both), both from one prompt pass per user;
* ``SeqRecPredictor``: ``scores`` (the sequential model's logits); its answer is the top candidate;
  and ``full_ranks`` (the target's rank among all items, from the same scoring), which gives the
  full-catalogue ``full/recall@K`` and ``full/ndcg@K``.

Everything after that is shared: the same rows (``dataset.<role>_split`` and ``<role>_limit``), the
same metric families (napo_lab.metrics.table), the same file and columns, the same ``eval.splits``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from napo_lab.data.datamodule import eval_rows
from napo_lab.eval.prompt_pass import answers_and_scores
from napo_lab.metrics.ranking import prefix_keys
from napo_lab.metrics.table import answer_ids, metrics_from_predictions
from napo_lab.metrics.volume import cohort_sizes, full_catalogue_metrics, volume_cohorts
from napo_lab.rundir import predictions_file

log = logging.getLogger(__name__)

PREDICTIONS_SCHEMA = pa.schema([
    ("user", pa.int64()), ("target", pa.int64()), ("candidates", pa.list_(pa.int64())),
    ("generated", pa.string()), ("scores", pa.list_(pa.float64())), ("scores_norm", pa.list_(pa.float64())),
    ("matched", pa.int64()), ("relevant", pa.list_(pa.int64())), ("full_ranks", pa.list_(pa.int64())),
    # titles, so a predictions file reads without the dataset: history (oldest first), target, answer
    ("history", pa.list_(pa.int64())), ("history_titles", pa.list_(pa.string())), ("target_title", pa.string()),
    ("candidate_titles", pa.list_(pa.string())), ("matched_title", pa.string()),
])
RANK_KS = (1, 5, 10)


class Predictor(Protocol):
    generation: bool  # judge the answers (hr@1, valid_ratio, pop/*@1, band/*)
    answers: str      # "text" (generated text matched to candidates) or "top1" (best-scored candidate)

    def predict(self, rows: pd.DataFrame, table: pd.DataFrame, role: str) -> dict[str, float]:
        """Fill ``table``'s model columns for ``rows``; return timings (metric name -> seconds per user)."""


class LLMPredictor:
    """Greedy answers and/or title log-likelihoods of an LLM recommender, from one prompt pass per user
    (napo_lab.eval.prompt_pass), in batches of users with similar prompt lengths.

    Timings (seconds per user): ``gen_seconds_per_user`` = prompt pass + decoding (what generation
    alone costs), ``rank_seconds_per_user`` = prompt pass + title scoring (what ranking alone costs),
    ``eval_seconds_per_user`` = everything, the prompt pass counted once."""

    def __init__(self, model, tokenizer, datamodule, protocol: str, layout: str, max_new_tokens: int):
        self.model, self.tokenizer, self.dm = model, tokenizer, datamodule
        self.protocol, self.layout, self.max_new_tokens = protocol, layout, int(max_new_tokens)
        self.generation = protocol != "ranking"
        self.answers = "text" if self.generation else "top1"

    def predict(self, rows: pd.DataFrame, table: pd.DataFrame, role: str) -> dict[str, float]:
        n, rank = max(1, len(rows)), self.protocol in ("ranking", "both")
        out = answers_and_scores(self.model, self.tokenizer, self.dm.builder.title_ids, self.dm.eval_batches(rows),
                                 len(rows), generate=self.generation, rank=rank, max_new_tokens=self.max_new_tokens,
                                 layout=self.layout, desc=f"{role}: {self.protocol}")
        s, times = out.seconds, {}
        if self.generation:
            table["generated"] = out.texts
            times["gen_seconds_per_user"] = (s["prompt"] + s["generate"]) / n
        if rank:
            table["scores"], table["scores_norm"] = list(out.summed), list(out.normed)
            times["rank_seconds_per_user"] = (s["rank"] + (s["prompt"] if self.layout == "shared_prefix" else 0)) / n
        times["eval_seconds_per_user"] = sum(s.values()) / n
        return times


class SeqRecPredictor:
    """A sequential recommender's logits for each row's candidates (its answer is the top one) and the
    target's rank among all items. Both come from one scoring of every item, so a model that samples
    (PreferDiff) is judged on the same sample by both protocols. ``mask_history`` removes the row's
    history items from the full ranking (the target never is)."""

    generation, answers = True, "top1"

    def __init__(self, model, mask_history: bool = False, batch_size: int = 512):
        self.model, self.mask_history, self.batch_size = model, bool(mask_history), int(batch_size)

    def predict(self, rows: pd.DataFrame, table: pd.DataFrame, role: str) -> dict[str, float]:
        from napo_lab.metrics.full_ranking import relevant_ranks
        from napo_lab.models.seqrec import all_item_scores, split_arrays

        start = time.perf_counter()
        arrays = split_arrays(rows, self.model.max_len)
        scores, ranks = [], []
        for s in range(0, len(rows), self.batch_size):
            block = all_item_scores(self.model, arrays["history"][s : s + self.batch_size])
            cands = arrays["candidates"][s : s + self.batch_size]
            scores.extend(np.take_along_axis(block, cands, axis=1).astype(np.float64))
            history = arrays["history"][s : s + self.batch_size] if self.mask_history else None
            ranks.extend(r.tolist() for r in relevant_ranks(block, arrays["target"][s : s + self.batch_size], history))
        table["scores"], table["full_ranks"] = scores, ranks
        return {"rank_seconds_per_user": (time.perf_counter() - start) / max(1, len(rows))}


class Evaluator:
    """Evaluates any predictor on the configured roles of one prepared dataset."""

    def __init__(self, prepared, dataset_cfg: Mapping[str, Any], eval_cfg: Mapping[str, Any], seed: int):
        self.prepared, self.dataset_cfg, self.seed = prepared, dataset_cfg, int(seed)
        self.roles = list(eval_cfg["splits"])
        pop = eval_cfg["popularity"]
        self.tail_ratio, self.pop_ks = float(pop["tail_ratio"]), tuple(int(k) for k in pop["ks"])
        self.bands = prepared.popularity_bands(float(pop["head_ratio"]), self.tail_ratio)
        self.full_ks = tuple(int(k) for k in eval_cfg.get("full_ks", (5, 10, 20)))
        cut = int(dataset_cfg["max_title_chars"])
        self.titles = [t[:cut] for t in prepared.titles]  # as the prompts show them (answers are matched to these)
        self._cohorts: np.ndarray | None = None

    @property
    def cohorts(self) -> np.ndarray:
        """Interaction-volume cohort of every item (head / mid / tail thirds of training interactions;
        not the item-share bands of ``band/...``), from the users' training items."""
        if self._cohorts is None:
            from napo_lab.data.negatives import UserItems

            freq = UserItems.from_rows(self.prepared.split("train"), self.prepared.n_items).frequency()
            self._cohorts, self.cohort_sizes = volume_cohorts(freq), cohort_sizes(volume_cohorts(freq), freq)
        return self._cohorts

    def rows(self, role: str) -> pd.DataFrame:
        return eval_rows(self.prepared, self.dataset_cfg, role)

    def evaluate(self, predictor: Predictor, roles: Sequence[str] | None = None,
                 out_dir: Path | None = None) -> dict[str, float]:
        """Metrics ``<role>/<metric>`` of every role; with ``out_dir`` also ``predictions_<role>.parquet``."""
        metrics: dict[str, float] = {}
        for role in roles or self.roles:
            rows = self.rows(role)
            table = pd.DataFrame({"user": rows["user"].astype("int64"), "target": rows["target"].astype("int64"),
                                  "candidates": [list(map(int, c)) for c in rows["candidates"]]})
            table["generated"] = ""
            table["scores"] = table["scores_norm"] = [[] for _ in range(len(table))]
            table["full_ranks"] = [[] for _ in range(len(table))]
            table["relevant"] = [[int(t)] for t in table["target"]]
            timings = predictor.predict(rows, table, role)
            found = metrics_from_predictions(table, self.titles, self.prepared.train_counts, self.bands,
                                             tail_ratio=self.tail_ratio, ks=RANK_KS, pop_ks=self.pop_ks,
                                             generation=predictor.generation, answers=predictor.answers,
                                             full_ks=self.full_ks)
            table["matched"] = answer_ids(table, self.titles, predictor.answers)
            names = self.prepared.titles
            table["history"] = [list(map(int, h)) for h in rows["history"]]
            table["history_titles"] = [[names[int(i)] for i in h] for h in rows["history"]]
            table["target_title"] = [names[int(t)] for t in table["target"]]
            table["candidate_titles"] = [[names[int(i)] for i in c] for c in table["candidates"]]
            table["matched_title"] = [names[int(m)] if 0 <= int(m) < len(names) else "" for m in table["matched"]]
            if out_dir is not None:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                write_predictions(table, Path(out_dir) / predictions_file(role))
            metrics.update(prefix_keys(timings, role))
            metrics.update(prefix_keys(found, role))
            if len(table) and all(r is not None and len(r) == 1 for r in table["full_ranks"]):
                # one target per row (sequential models): HR@10 and the interaction-volume cohorts
                full = full_catalogue_metrics(np.array([r[0] for r in table["full_ranks"]], dtype=np.int64),
                                              table["target"].to_numpy(), self.cohorts)
                metrics.update({k: v for k, v in prefix_keys(full, f"{role}/full").items() if k not in metrics})
                metrics.update(prefix_keys(self.cohort_sizes, "volume_cohorts"))
        return {k: float(v) for k, v in metrics.items()}


def evaluate_full_ranking_table(table: pd.DataFrame, role: str, out_dir: Path | None,
                                full_ks: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """Metrics ``<role>/full/*`` of a full-ranking-only table (one row per user: ``relevant`` items and
    their ``full_ranks``; no candidates), e.g. the non-sequential family's; with ``out_dir`` also
    ``predictions_<role>.parquet`` in the one schema."""
    table = table.copy()
    for column, empty in (("target", -1), ("generated", ""), ("matched", -1)):
        if column not in table:
            table[column] = empty
    for column in ("candidates", "scores", "scores_norm"):
        if column not in table:
            table[column] = [[] for _ in range(len(table))]
    found = metrics_from_predictions(table, [], full_ks=full_ks)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_predictions(table, Path(out_dir) / predictions_file(role))
    return {k: float(v) for k, v in prefix_keys(found, role).items()}


def write_predictions(table: pd.DataFrame, path: Path) -> None:
    """One fixed schema for every model (an absent column is empty strings / empty lists)."""
    columns = {}
    for field in PREDICTIONS_SCHEMA:
        if field.name in table:
            columns[field.name] = table[field.name].tolist()
        else:
            empty = [] if pa.types.is_list(field.type) else "" if pa.types.is_string(field.type) else -1
            columns[field.name] = [empty for _ in range(len(table))]
    columns["scores"] = [np.asarray(s, dtype=np.float64).tolist() for s in columns["scores"]]
    columns["scores_norm"] = [np.asarray(s, dtype=np.float64).tolist() for s in columns["scores_norm"]]
    pq.write_table(pa.table(columns, schema=PREDICTIONS_SCHEMA), path)
