"""Tables and plots from a run or a sweep directory: ``python -m napo_lab.report DIR``.

A run directory is any directory holding ``run_info.json`` (written by napo_lab.run); a sweep is
any tree containing run directories (Hydra multirun job subdirectories). The report reads only
what runs wrote (run_info.json, metrics.json, train_metrics.csv), so it can be rebuilt at any time
without a GPU.

Outputs, in ``--out`` (default: DIR itself):
* report.md: one row per (dataset, method) with mean +- std over seeds (sample std, ddof=1; "-"
  with one seed), the number of seeds, the best mean per column *within each dataset* in bold,
  and the list of failed or unreadable runs.
* report.csv: the same rows with explicit ``<metric>:mean``, ``<metric>:std``, ``<metric>:n``.
* hr1_by_method.png, hr1_by_band.png, training_curves.png; a plot whose data is absent is skipped
  with a logged note (and a line in report.md) instead of failing.

Runs of one (dataset, method) whose overrides differ in something other than the seed (say
``loss.beta``) are not averaged together: the differing overrides are appended to the method label.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napo_lab.metrics import registry
from napo_lab.plots import plot_hr1_by_band, plot_hr1_by_method, plot_training_curves
from napo_lab.rundir import METRICS, RUN_INFO

log = logging.getLogger(__name__)

BANDS = ("head", "mid", "tail")
_LEAF_ORDER = ("hr@1", "hr@1_valid", "valid_ratio", "valid_ratio_llara", "hr", "ndcg", "mrr",
               "avg_pop", "tail_pct", "coverage", "gini")
_SCORERS = ("gen", "rank", "rank_norm")
# Seed-like overrides vary across the runs being averaged; the others name the group already.
_GROUPING_KEYS = ("seed", "dataset", "loss", "method")
# Run control, not a method setting: a job rerun with resume=false or with another logger or cache
# directory is the same method (it never gets a variant label of its own).
_RUN_CONTROL_KEYS = ("resume", "debug", "logger", "paths.cache_dir", "paths.data_dir", "paths.output_dir",
                     "trainer.enable_progress_bar", "hydra.launcher.n_jobs")


class NoRunsError(Exception):
    """The given path holds no run directory."""


@dataclass
class Run:
    path: Path
    info: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # set when the run failed or its files cannot be read

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def dataset(self) -> str:
        return str(self.info.get("dataset", "?"))

    @property
    def method(self) -> str:
        return str(self.info.get("method", "?"))


# ----------------------------------------------------------------------------- loading


def find_runs(root: Path) -> list[Path]:
    """Run directories under root (root included), in path order."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted({p.parent for p in root.rglob(RUN_INFO) if p.is_file()})


def _read_json(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def load_run(path: Path) -> Run:
    """Read one run; a failed or unreadable run comes back with ``error`` set, never raises."""
    try:
        info = _read_json(path / RUN_INFO)
    except (OSError, ValueError) as exc:
        return Run(path, {}, error=f"unreadable {RUN_INFO}: {exc}")
    if info.get("status") != "ok":
        return Run(path, info, error=str(info.get("error") or f"status={info.get('status')!r}"))
    try:
        raw = _read_json(path / METRICS)
    except (OSError, ValueError) as exc:
        return Run(path, info, error=f"unreadable {METRICS}: {exc}")
    metrics = {k: float(v) for k, v in raw.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return Run(path, info, metrics)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _variant_labels(runs: list[Run]) -> list[str]:
    """Method label per run: the method, plus the overrides that differ within its group."""
    def extras(run: Run) -> frozenset[str]:
        ovs = [str(o) for o in run.info.get("overrides") or []]
        kept = {o for o in ovs
                if "seed" not in _override_key(o).split(".")[-1]
                and _override_key(o) not in _GROUPING_KEYS
                and _override_key(o) not in _RUN_CONTROL_KEYS
                and not _override_key(o).startswith("hydra")}
        if run.info.get("model") and not any(_override_key(o) == "model" for o in ovs):
            kept.add(f"model={run.info['model']}")
        return frozenset(kept)

    groups: dict[tuple[str, str], list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault((run.dataset, run.method), []).append(i)
    labels = [r.method for r in runs]
    for idx in groups.values():
        sets = [extras(runs[i]) for i in idx]
        common = frozenset.intersection(*sets)
        for i, s in zip(idx, sets):
            if s - common:
                labels[i] = f"{runs[i].method} [{', '.join(sorted(s - common))}]"
    return labels


# ----------------------------------------------------------------------------- aggregation


def _is_count(key: str) -> bool:
    return registry.is_count(key)


def _sort_key(rel: str) -> tuple:
    parts = rel.split("/")
    leaf = parts[-1]
    family = 2 if "band" in parts else 1 if "pop" in parts else 0
    scorer = _SCORERS.index(parts[0]) if parts[0] in _SCORERS[1:] else 0
    band = next((BANDS.index(p) for p in parts if p in BANDS), len(BANDS))
    name, _, k = leaf.partition("@")
    leaf_idx = (_LEAF_ORDER.index(leaf) if leaf in _LEAF_ORDER
                else _LEAF_ORDER.index(name) if name in _LEAF_ORDER else len(_LEAF_ORDER))
    k_num = int(k) if k.isdigit() else 0
    return (family, scorer, band, leaf_idx, k_num, rel)


def metric_columns(runs: Sequence[Run], split: str) -> list[str]:
    """Metric keys of ``split`` present in any run, counts excluded, in a fixed readable order."""
    prefix = f"{split}/"
    keys = {k for r in runs for k in r.metrics if k.startswith(prefix) and not _is_count(k)}
    return sorted(keys, key=lambda k: _sort_key(k[len(prefix):]))


def best_direction(key: str) -> str | None:
    """"higher" / "lower" from the metric registry; None (never bold) for times, counts and flags."""
    return registry.direction(key)


def aggregate(runs: Sequence[Run], split: str = "test") -> pd.DataFrame:
    """One row per (dataset, method label): n_runs, seeds, and <key>:mean / :std / :n columns."""
    runs = [r for r in runs if r.ok]
    cols = metric_columns(runs, split)
    labels = _variant_labels(list(runs))
    groups: dict[tuple[str, str], list[Run]] = {}
    for run, label in zip(runs, labels):
        groups.setdefault((run.dataset, label), []).append(run)
    rows = []
    for (dataset, label), members in sorted(groups.items()):
        row: dict[str, Any] = {
            "dataset": dataset,
            "method": label,
            "n_runs": len(members),
            "seeds": " ".join(str(m.info.get("seed", "?")) for m in members),
        }
        for c in cols:
            vals = np.array([m.metrics[c] for m in members if c in m.metrics], dtype=np.float64)
            row[f"{c}:mean"] = float(vals.mean()) if vals.size else np.nan
            row[f"{c}:std"] = float(vals.std(ddof=1)) if vals.size > 1 else np.nan
            row[f"{c}:n"] = int(vals.size)
        rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "method", "n_runs", "seeds"]
                        + [f"{c}:{s}" for c in cols for s in ("mean", "std", "n")])


# ----------------------------------------------------------------------------- markdown


def _fmt(x: float) -> str:
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


def _cell(row: pd.Series, col: str, best: bool, n_runs: int) -> str:
    mean, std, n = row[f"{col}:mean"], row[f"{col}:std"], int(row[f"{col}:n"])
    if n == 0:
        return ""
    text = f"{_fmt(mean)} ± {_fmt(std) if n > 1 else '-'}"
    if n != n_runs:
        text += f" (n={n})"
    return f"**{text}**" if best else text


def _markdown_table(df: pd.DataFrame, cols: list[str], split: str) -> list[str]:
    heads = ["dataset", "method", "n"] + [c[len(split) + 1:] for c in cols]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    best: dict[tuple[str, str], float] = {}
    for dataset, sub in df.groupby("dataset", sort=False):
        for c in cols:
            means = sub[f"{c}:mean"].dropna()
            direction = best_direction(c)
            if len(means) and direction is not None:
                best[(str(dataset), c)] = means.min() if direction == "lower" else means.max()
    for _, row in df.iterrows():
        cells = [str(row["dataset"]), str(row["method"]).replace("|", "\\|"), str(row["n_runs"])]
        for c in cols:
            b = best.get((str(row["dataset"]), c))
            is_best = b is not None and row[f"{c}:n"] > 0 and row[f"{c}:mean"] == b
            cells.append(_cell(row, c, bool(is_best), int(row["n_runs"])))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_LEGEND = [
    "- `hr@1`, `valid_ratio`: generation, S-DPO/NAPO rule (exact title substring; HR@1 = hits / all rows).",
    "- `hr@1_valid`, `valid_ratio_llara`: generation, LLaRA rule (first line, lower-cased; "
    "HR@1 = hits / valid rows). Never compare it with `hr@1`.",
    "- `rank/*`: candidates ranked by the summed log-likelihood of their titles; `rank_norm/*`: "
    "length-normalised. These are *sampled* metrics over the prompt's candidates (20), ties "
    "broken pessimistically.",
    "- `pop/*`: popularity of the top-1 answer; `rank/pop/*@K`: of the top-K ranked candidates "
    "(RecBole definitions, train-split counts). Lower is better for `avg_pop` and `gini`, higher "
    "for the other quality and bias metrics.",
    "- `band/<band>/hr@1`: HR@1 over rows whose target is a head / mid / tail item.",
    "- Cells: mean ± sample std over seeds (`-` with one seed); `(n=..)` when fewer runs report "
    "the metric than the row has. **Bold**: best mean of the column within the dataset (times and "
    "counts are never bold; directions from napo_lab.metrics.registry).",
]


def _markdown(root: Path, runs: list[Run], df: pd.DataFrame, cols: list[str], split: str,
              plots: list[Path], notes: list[str], paired: list[str] | None = None) -> str:
    ok = [r for r in runs if r.ok]
    failed = [r for r in runs if not r.ok]
    lines = [f"# napo_lab report: {root.name}", "",
             f"Source: `{root}`. Runs: {len(runs)} found, {len(ok)} ok, {len(failed)} failed or "
             f"unreadable. Split: `{split}`.", ""]
    if cols and len(df):
        lines += ["## Results", ""] + _markdown_table(df, cols, split) + [""] + _LEGEND + [""]
    else:
        lines += ["## Results", "", f"No `{split}/` metrics in any successful run.", ""]
    lines += paired or []
    if failed:
        lines += ["## Failed or skipped runs", "", "| run | dataset | method | seed | error |",
                  "|---|---|---|---|---|"]
        for r in failed:
            err = (r.error or "").strip().splitlines()
            msg = (err[-1] if err else "")[:200].replace("|", "\\|")
            rel = r.path.relative_to(root) if r.path != root and root in r.path.parents else r.path
            lines.append(f"| `{rel}` | {r.info.get('dataset', '?')} | {r.info.get('method', '?')} | "
                         f"{r.info.get('seed', '?')} | {msg} |")
        lines.append("")
    if plots or notes:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
        lines += [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


# ----------------------------------------------------------------------------- W&B


def log_to_wandb(table: pd.DataFrame, plots: Sequence[Path], source: Path, project: str | None = None,
                 paired: pd.DataFrame | None = None) -> None:
    """Log the report table and PNGs to a new W&B run (job_type "report").

    Mode: $WANDB_MODE when set, else "online" when $WANDB_API_KEY is set, else "offline", so a
    machine without credentials never blocks on a login prompt.
    """
    import wandb

    from napo_lab.lit.loggers import wandb_mode

    mode = wandb_mode(None)
    clean = table.astype(object).where(table.notna(), None)
    # The sweep's own group (its jobs log to sweep-<sweep dir name>) and files under the sweep dir, not ./wandb.
    run = wandb.init(project=project or os.environ.get("WANDB_PROJECT", "napo_lab"), job_type="report",
                     name=f"report-{source.name}", group=f"sweep-{source.name}", dir=str(source), mode=mode,
                     config={"source": str(source)})
    try:
        payload: dict[str, Any] = {"report/table": wandb.Table(dataframe=clean)}
        if paired is not None and not paired.empty:
            payload["report/paired"] = wandb.Table(dataframe=paired.astype(object))
        payload.update({f"report/{p.stem}": wandb.Image(str(p)) for p in plots})
        run.log(payload)
    finally:
        run.finish()


# ----------------------------------------------------------------------------- entry points


def write_report(path: str | Path, out: str | Path | None = None, split: str = "test",
                 use_wandb: bool = False, wandb_project: str | None = None, baseline: str | None = None,
                 n_boot: int = 10_000) -> Path:
    """Write report.md, report.csv and the plots for a run or sweep dir; returns report.md's path.

    With ``baseline`` (a method label, e.g. ``sft`` or ``zero_shot``) also report_paired.csv and a
    report.md section: every other method minus the baseline, per user, with paired bootstrap CIs.

    Raises NoRunsError when ``path`` holds no run directory.
    """
    root = Path(path).resolve()
    run_dirs = find_runs(root)
    if not run_dirs:
        raise NoRunsError(f"no run directory (containing {RUN_INFO}) under {root}")
    out_dir = Path(out).resolve() if out is not None else root
    out_dir.mkdir(parents=True, exist_ok=True)

    runs = [load_run(p) for p in run_dirs]
    ok = [r for r in runs if r.ok]
    for r in runs:
        if not r.ok:
            last = (r.error or "").strip().splitlines()
            log.warning("skipping run %s: %s", r.path, last[-1] if last else "")
    df = aggregate(ok, split)
    cols = metric_columns(ok, split)
    df.to_csv(out_dir / "report.csv", index=False)

    plots: list[Path] = []
    notes: list[str] = []
    for name, make, missing in (
        ("hr1_by_method.png", lambda p: plot_hr1_by_method(df, split, p), f"no {split}/hr@1 or {split}/rank/hr@1"),
        ("hr1_by_band.png", lambda p: plot_hr1_by_band(df, split, p), f"no {split}/band/<band>/hr@1"),
        ("training_curves.png", lambda p: plot_training_curves(ok, _variant_labels(ok), p),
         "no preference-stage rewards/margin or rewards/accuracy in any train_metrics.csv"),
    ):
        target = out_dir / name
        made = make(target) if len(ok) else None
        if made is None:
            note = f"{name} skipped: {missing}"
            log.warning(note)
            notes.append(note)
            target.unlink(missing_ok=True)  # never leave a stale plot from an earlier report
        else:
            plots.append(made)

    paired_df, paired_md = None, None
    if baseline:
        from napo_lab.comparisons import markdown, paired_frame

        paired_df = paired_frame(ok, _variant_labels(ok), split, baseline, n_boot=n_boot)
        paired_df.to_csv(out_dir / "report_paired.csv", index=False)
        paired_md = markdown(paired_df, split, baseline)
    report = out_dir / "report.md"
    report.write_text(_markdown(root, runs, df, cols, split, plots, notes, paired_md))
    if use_wandb:
        log_to_wandb(df, plots, root, wandb_project, paired_df)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napo_lab.report", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a run directory or a sweep directory containing run directories")
    parser.add_argument("--out", default=None, help="output directory (default: PATH)")
    parser.add_argument("--split", default="test", help="metric split to tabulate (default: test)")
    parser.add_argument("--baseline", default=None,
                        help="compare every method with this one (e.g. sft, zero_shot): paired bootstrap CIs over users")
    parser.add_argument("--wandb", action="store_true", help="also log the table and plots to W&B")
    parser.add_argument("--wandb-project", default=None, help="W&B project (default: $WANDB_PROJECT or napo_lab)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = write_report(args.path, args.out, args.split, args.wandb, args.wandb_project, args.baseline)
    except NoRunsError as exc:
        print(f"napo_lab.report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {report} (+ report.csv and plots in {report.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
