"""The evaluator: rows of a role -> a predictions table -> metrics (and ``predictions_<role>.parquet``).

A predictor fills the table's model columns for the rows it is given:

* ``LLMPredictor``: ``generated`` (greedy answers, eval.protocol generation / both) and ``scores`` /
  ``scores_norm`` (title log-likelihoods, ranking / both);
* ``SeqRecPredictor``: ``scores`` (the sequential model's logits); its answer is the top candidate.

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
from napo_lab.eval.generation import generate_answers
from napo_lab.metrics.ranking import prefix_keys
from napo_lab.metrics.table import answer_ids, metrics_from_predictions
from napo_lab.metrics.volume import cohort_sizes, full_catalogue_metrics, full_catalogue_ranks, volume_cohorts
from napo_lab.models.scoring import title_logliks
from napo_lab.rundir import predictions_file

log = logging.getLogger(__name__)

PREDICTIONS_SCHEMA = pa.schema([
    ("user", pa.int64()), ("target", pa.int64()), ("candidates", pa.list_(pa.int64())),
    ("generated", pa.string()), ("scores", pa.list_(pa.float64())), ("scores_norm", pa.list_(pa.float64())),
    ("matched", pa.int64()),
    ("full_rank", pa.int64()),  # the target's rank among all items (sequential models; null for LLMs)
])
RANK_KS = (1, 5, 10)


class Predictor(Protocol):
    generation: bool  # judge the answers (hr@1, valid_ratio, pop/*@1, band/*)
    answers: str      # "text" (generated text matched to candidates) or "top1" (best-scored candidate)

    def predict(self, rows: pd.DataFrame, table: pd.DataFrame, role: str) -> dict[str, float]:
        """Fill ``table``'s model columns for ``rows``; return timings (metric name -> seconds per user)."""


class LLMPredictor:
    """Greedy answers and/or title log-likelihoods of an LLM recommender."""

    def __init__(self, model, tokenizer, datamodule, protocol: str, layout: str, max_new_tokens: int):
        self.model, self.tokenizer, self.dm = model, tokenizer, datamodule
        self.protocol, self.layout, self.max_new_tokens = protocol, layout, int(max_new_tokens)
        self.generation = protocol != "ranking"
        self.answers = "text" if self.generation else "top1"

    def predict(self, rows: pd.DataFrame, table: pd.DataFrame, role: str) -> dict[str, float]:
        loader, n, times = self.dm.loader(rows), max(1, len(rows)), {}
        start = time.perf_counter()
        if self.generation:
            table["generated"] = generate_answers(self.model, self.tokenizer, loader, self.max_new_tokens,
                                                  f"{role}: generate")
            times["gen_seconds_per_user"] = (time.perf_counter() - start) / n
        if self.protocol in ("ranking", "both"):
            t0 = time.perf_counter()
            summed, normed = title_logliks(self.model, self.dm.builder.title_ids, loader,
                                           self.tokenizer.pad_token_id, self.layout, f"{role}: rank")
            table["scores"], table["scores_norm"] = list(summed), list(normed)
            times["rank_seconds_per_user"] = (time.perf_counter() - t0) / n
        return times


class SeqRecPredictor:
    """A sequential recommender's logits for each row's candidates; its answer is the top one. It also
    ranks each target among *all* items (``full_rank``: full-catalogue HR/NDCG@10 and the
    interaction-volume cohorts of napo_lab.metrics.volume)."""

    generation, answers = True, "top1"

    def __init__(self, model):
        self.model = model

    def predict(self, rows: pd.DataFrame, table: pd.DataFrame, role: str) -> dict[str, float]:
        from napo_lab.models.seqrec import candidate_logits, split_arrays

        start = time.perf_counter()
        arrays = split_arrays(rows, self.model.max_len)
        table["scores"] = list(candidate_logits(self.model, arrays["history"], arrays["candidates"]))
        table["full_rank"] = full_catalogue_ranks(self.model.scores, arrays["history"], arrays["target"])
        return {"rank_seconds_per_user": (time.perf_counter() - start) / max(1, len(rows))}


class Evaluator:
    """Evaluates any predictor on the configured roles of one prepared dataset."""

    def __init__(self, prepared, dataset_cfg: Mapping[str, Any], eval_cfg: Mapping[str, Any], seed: int):
        self.prepared, self.dataset_cfg, self.seed = prepared, dataset_cfg, int(seed)
        self.roles = list(eval_cfg["splits"])
        pop = eval_cfg["popularity"]
        self.tail_ratio, self.pop_ks = float(pop["tail_ratio"]), tuple(int(k) for k in pop["ks"])
        self.bands = prepared.popularity_bands(float(pop["head_ratio"]), self.tail_ratio)
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
            table["full_rank"] = None
            timings = predictor.predict(rows, table, role)
            found = metrics_from_predictions(table, self.titles, self.prepared.train_counts, self.bands,
                                             tail_ratio=self.tail_ratio, ks=RANK_KS, pop_ks=self.pop_ks,
                                             generation=predictor.generation, answers=predictor.answers)
            table["matched"] = answer_ids(table, self.titles, predictor.answers)
            if out_dir is not None:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                write_predictions(table, Path(out_dir) / predictions_file(role))
            metrics.update(prefix_keys(timings, role))
            metrics.update(prefix_keys(found, role))
            if table["full_rank"].notna().all() and len(table):
                full = full_catalogue_metrics(table["full_rank"].to_numpy(np.int64), table["target"].to_numpy(),
                                              self.cohorts)
                metrics.update(prefix_keys(full, f"{role}/full"))
                metrics.update(prefix_keys(self.cohort_sizes, "volume_cohorts"))
        return {k: float(v) for k, v in metrics.items()}


def write_predictions(table: pd.DataFrame, path: Path) -> None:
    """One fixed schema for every model (an absent column is empty strings / empty lists)."""
    columns = {name: table[name].tolist() for name in PREDICTIONS_SCHEMA.names}
    columns["scores"] = [np.asarray(s, dtype=np.float64).tolist() for s in columns["scores"]]
    columns["scores_norm"] = [np.asarray(s, dtype=np.float64).tolist() for s in columns["scores_norm"]]
    columns["full_rank"] = [None if r is None or r != r else int(r) for r in columns["full_rank"]]
    pq.write_table(pa.table(columns, schema=PREDICTIONS_SCHEMA), path)
