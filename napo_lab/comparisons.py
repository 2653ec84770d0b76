"""The report's paired comparisons: every method against a named baseline (``report --baseline sft``),
user by user, with a 95% paired bootstrap interval over users and the seeds pooled.

Why: two methods' means over 122 (or 500) users can differ by more than a few hits by chance alone.
Each run's ``predictions_<split>.parquet`` holds what every user got, so the difference is measured
on the same users (which removes the user-to-user spread) and resampled over users to say how much
it could move on another draw of users. A difference whose interval excludes 0 is marked
significant; one inside the noise is not a finding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from napo_lab.metrics.paired import PAIRED_METRICS, chance_levels, compare
from napo_lab.rundir import predictions_file

log = logging.getLogger(__name__)


def _tables(runs: Sequence[Any], split: str) -> list[pd.DataFrame] | None:
    out = []
    for run in runs:
        path = run.path / predictions_file(split)
        if not path.is_file():
            return None
        out.append(pd.read_parquet(path))
    return out


def _by_seed(runs: Sequence[Any]) -> list[Any]:
    return sorted(runs, key=lambda r: (str(r.info.get("seed", "")), str(r.path)))


def paired_frame(runs: Sequence[Any], labels: Sequence[str], split: str, baseline: str,
                 n_boot: int = 10_000) -> pd.DataFrame:
    """One row per (dataset, method != baseline, metric): diff, low, high, significant, n_users, n_seeds.

    ``baseline`` names a method label (or the method itself) present in the same dataset. Seeds are
    paired one to one when both sides have the same seeds, else the baseline's per-user values are
    averaged over its runs (a deterministic zero-shot row has one)."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for run, label in zip(runs, labels):
        groups.setdefault((run.dataset, label), []).append(run)
    rows = []
    for (dataset, label), members in sorted(groups.items()):
        base = groups.get((dataset, baseline)) or [r for (d, _), g in groups.items() if d == dataset
                                                    for r in g if r.method == baseline]
        if not base or label == baseline or set(map(id, members)) == set(map(id, base)):
            continue
        method_runs, base_runs = _by_seed(members), _by_seed(base)
        a, b = _tables(method_runs, split), _tables(base_runs, split)
        if a is None or b is None:
            log.warning("no %s for %s or %s: no paired comparison", predictions_file(split), label, baseline)
            continue
        paired = [r.info.get("seed") for r in method_runs] == [r.info.get("seed") for r in base_runs]
        for metric in PAIRED_METRICS:
            res = compare(a, b, metric, paired, n_boot=n_boot)
            if res is None:
                continue
            rows.append({"dataset": dataset, "method": label, "baseline": baseline, "metric": metric,
                         "diff": res.diff, "low": res.low, "high": res.high, "significant": res.significant,
                         "n_users": res.n_users, "n_seeds": res.n_seeds, "seeds_paired": paired,
                         "chance": chance_levels(len(a[0]["candidates"].iloc[0]))[metric]})
    return pd.DataFrame(rows, columns=["dataset", "method", "baseline", "metric", "diff", "low", "high",
                                       "significant", "n_users", "n_seeds", "seeds_paired", "chance"])


def markdown(frame: pd.DataFrame, split: str, baseline: str) -> list[str]:
    """The report.md section: a method per row, a metric per column, '+d [lo, hi]', bold + * when the
    95% interval excludes 0."""
    lines = [f"## Paired differences against `{baseline}` ({split})", ""]
    if frame.empty:
        return lines + [f"No method could be paired with `{baseline}` (it needs the baseline's runs and "
                        f"{predictions_file(split)} with the same rows in every run).", ""]
    metrics = [m for m in PAIRED_METRICS if m in set(frame["metric"])]
    lines += ["| dataset | method | seeds | users | " + " | ".join(metrics) + " |",
              "|" + "---|" * (4 + len(metrics))]
    for (dataset, method), sub in frame.groupby(["dataset", "method"], sort=False):
        cells = {r["metric"]: r for _, r in sub.iterrows()}
        first = sub.iloc[0]
        row = [str(dataset), str(method).replace("|", "\\|"),
               f"{first['n_seeds']}{'' if first['seeds_paired'] else ' (baseline averaged)'}",
               str(first["n_users"])]
        for m in metrics:
            r = cells.get(m)
            if r is None:
                row.append("")
                continue
            text = f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"
            row.append(f"**{text}** *" if r["significant"] else text)
        lines.append("| " + " | ".join(row) + " |")
    chance = frame.drop_duplicates("metric").set_index("metric")["chance"]
    lines += ["", f"- Each cell: mean over users and seeds of (method - `{baseline}`), with the 95% paired "
              "bootstrap interval over users (10,000 resamples, the same users in every seed). **Bold** and * "
              "= the interval excludes 0; anything else is inside the noise of this many users.",
              "- Chance level of each metric (random ranking of the candidates): "
              + ", ".join(f"`{m}` {chance[m]:.3f}" for m in metrics) + ".", ""]
    return lines
