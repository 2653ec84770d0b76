"""Every metric napo_lab reports, once: its name pattern, which direction is better, a label and the
formula it follows. The run's results table (napo_lab.run), the report (napo_lab.report) and the W&B
run (napo_lab.lit.loggers.publish: ``metric_directions`` in its config) read it, so a metric is never
"best" by a guess.

Keys are matched on their last path components: ``test/rank/pop/avg_pop@5`` is ``avg_pop@K`` in the
``rank/pop`` family. ``direction`` is ``"higher"`` or ``"lower"`` for metrics that rank methods, and
``None`` for counts, times and flags, which are never marked best (a slower run is not better).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    pattern: str          # regex on the key without its role prefix, e.g. r"(rank|rank_norm)/hr@\d+"
    direction: str | None  # "higher" | "lower" | None (not comparable: counts, times, flags)
    label: str            # one line for tables
    formula: str          # where the definition is written down
    headline: bool = False  # shown in the run's results table

    def matches(self, rel: str) -> bool:
        return re.fullmatch(self.pattern, rel) is not None


_RANK = r"(?:rank|rank_norm)"
_BAND = r"(?:(?:rank|rank_norm)/)?band/[a-z]+"
METRICS: tuple[Metric, ...] = (
    Metric(r"hr@1", "higher", "HR@1, S-DPO: hits / all users", "napo_lab.metrics.matching (S-DPO rule)", True),
    Metric(r"hr@1_valid", "higher", "HR@1, LLaRA: hits / valid answers", "napo_lab.metrics.matching (LLaRA rule)",
           True),
    Metric(r"valid_ratio", "higher", "answers naming exactly one candidate", "napo_lab.metrics.matching", True),
    Metric(r"valid_ratio_llara", "higher", "valid answers under LLaRA's rule", "napo_lab.metrics.matching"),
    Metric(rf"{_RANK}/hr@\d+", "higher", "HR@K by score (sampled candidates)", "napo_lab.metrics.ranking"),
    Metric(rf"{_RANK}/ndcg@\d+", "higher", "NDCG@K (sampled)", "napo_lab.metrics.ranking"),
    Metric(rf"{_RANK}/mrr", "higher", "MRR (sampled)", "napo_lab.metrics.ranking"),
    Metric(r"full/recall@\d+", "higher", "Recall@K, every item ranked", "napo_lab.metrics.full_ranking"),
    Metric(r"full/ndcg@\d+", "higher", "NDCG@K, every item ranked", "napo_lab.metrics.full_ranking"),
    Metric(rf"(?:{_RANK}/)?pop/avg_pop@\d+", "lower", "mean train count of the answers",
           "napo_lab.metrics.popularity (RecBole AveragePopularity)"),
    Metric(rf"(?:{_RANK}/)?pop/tail_pct@\d+", "higher", "share of tail items among answers",
           "napo_lab.metrics.popularity (RecBole TailPercentage)"),
    Metric(rf"(?:{_RANK}/)?pop/coverage@\d+", "higher", "item coverage of answers",
           "napo_lab.metrics.popularity (RecBole ItemCoverage)"),
    Metric(rf"(?:{_RANK}/)?pop/gini@\d+", "lower", "Gini index of answer counts",
           "napo_lab.metrics.popularity (RecBole GiniIndex)"),
    Metric(rf"{_BAND}/hr@1", "higher", "HR@1 on targets of one popularity band", "napo_lab.metrics.popularity"),
    # full catalogue (sequential models) and the interaction-volume cohorts (napo_lab.metrics.volume)
    Metric(r"full/hr@\d+", "higher", "HR@K over the whole catalogue", "napo_lab.metrics.volume", True),
    Metric(r"full/ndcg@\d+", "higher", "NDCG@K over the whole catalogue", "napo_lab.metrics.volume", True),
    Metric(r"full/volume/(?:head|mid|tail)/(?:hr|ndcg)@\d+", "higher",
           "full-catalogue HR/NDCG@K on targets of one interaction-volume cohort", "napo_lab.metrics.volume"),
    Metric(r"full/volume/balance_(?:ndcg|hr)@\d+", "higher", "1 - Gini over the three cohort values",
           "napo_lab.metrics.volume (apple/ml-negative-sampling)", True),
    Metric(r"volume_cohorts/(?:head|mid|tail)/(?:items|interaction_share)", None, "cohort size",
           "napo_lab.metrics.volume"),
    Metric(r"dpo4rec/[a-z_0-9]+/(?:ndcg|map)@\d+", "higher", "DPO4Rec re-ranking of a 10-item list (not HR@1)",
           "napo_lab.metrics.rerank (KAR)", True),
    Metric(r"dpo4rec/[a-z_0-9]+/(?:ndcg|map)@\d+_vs_no_reasoning", "higher", "paired difference to the re-ranker "
           "without reasoning", "napo_lab.metrics.stats.paired_bootstrap"),
    Metric(r"dpo4rec/.*_ci_(?:low|high)", None, "95% bootstrap bound over users", "napo_lab.metrics.stats"),
    Metric(r"dpo4rec/.*", None, "DPO4Rec bookkeeping", "napo_lab.recipe.dpo4rec"),
    # counts: how many rows a metric is over
    Metric(r"(?:.*/)?n(?:_[a-z_@\d]+)?", None, "count", "rows counted"),
    Metric(rf"(?:{_RANK}/)?pop/n_rec@\d+", None, "rows with an answer", "napo_lab.metrics.popularity"),
    # times and bookkeeping: never best
    Metric(r".*seconds.*|wall_time_s", None, "time (seconds)", "wall clock"),
    Metric(r"seqrec/best_epoch|seqrec/from_cache|sft/reused_cache", None, "bookkeeping", "napo_lab.recipe"),
    Metric(r"cf/best_epoch|cf/epochs_run", None, "bookkeeping", "napo_lab.models.cf"),
    # Triplet Shapley diagnostics (napo_lab.shapley): not methods' scores, never best
    Metric(r"shapley/.*", None, "valuation diagnostic", "napo_lab.shapley"),
)

_ROLE = re.compile(r"^(?:val|test)/")


def relative(key: str) -> str:
    """The key without its role prefix (``test/rank/mrr`` -> ``rank/mrr``)."""
    return _ROLE.sub("", key, count=1)


def lookup(key: str) -> Metric | None:
    rel = relative(key)
    return next((m for m in METRICS if m.matches(rel)), None)


def direction(key: str) -> str | None:
    """"higher", "lower", or None when the metric must never be marked best (or is unknown)."""
    metric = lookup(key)
    return metric.direction if metric is not None else None


def is_count(key: str) -> bool:
    metric = lookup(key)
    return metric is not None and metric.label in ("count", "rows with an answer")


def label(key: str) -> str:
    metric = lookup(key)
    if metric is None:
        return ""
    band = re.search(r"band/([a-z]+)/hr@1$", key)
    return f"HR@1 on {band.group(1)} targets" if band else metric.label


#: The run's results table, in order (metrics absent from a run are left out).
HEADLINE = ("hr@1", "hr@1_valid", "valid_ratio", "rank/hr@1", "rank/ndcg@10", "rank/mrr", "full/recall@5",
            "full/ndcg@5", "full/recall@10", "full/ndcg@10", "full/recall@20", "full/ndcg@20", "full/hr@10",
            "full/volume/balance_ndcg@10", "pop/avg_pop@1", "pop/tail_pct@1", "pop/coverage@1", "band/head/hr@1",
            "band/mid/hr@1", "band/tail/hr@1")

