"""Learning curves: a metric against a setting that varies across the runs of a sweep (training
examples, epochs, LoRA rank, ...), beside the references every LLM run stores (chance, zero-shot,
the sequential model on the same rows) and each point's paired 95% interval against zero-shot.

    python -m napo_lab.curve multirun/lastfm_curve --x sft.train_limit
    python -m napo_lab.curve <sweep dir> --x sft.epochs --metrics test/rank/mrr,test/rank/hr@1 --out <dir>

Writes learning_curve.csv, learning_curve.md and learning_curve.png. Runs that failed are skipped with
a warning; runs that share an x value (seeds) are averaged, and the table says how many there were.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from napo_lab.report import NoRunsError, Run, find_runs, load_run
from napo_lab.rundir import CONFIG

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("test/rank/mrr", "test/rank/hr@1")
REFERENCES = (("chance", "ref/chance/{m}"), ("zero-shot", "ref/zero_shot/{m}"), ("sequential model", "ref/seqrec/{m}"))


class CurveError(ValueError):
    """The runs cannot give the requested curve (no x value, no metric); the message says what to fix."""


def x_value(run: Run, key: str) -> float:
    """The run's value of ``key`` (a dotted config key) from its resolved config.yaml."""
    cfg = OmegaConf.load(run.path / CONFIG)
    value = OmegaConf.select(cfg, key, default=None)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CurveError(f"{run.path}: {key}={value!r} in {CONFIG}; --x needs a numeric setting the runs vary")
    return float(value)


def curve_frame(runs: Sequence[Run], key: str, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per x value: n_runs, each metric (mean over runs), its vs-zero-shot diff and interval
    (mean over runs of each run's own paired bootstrap bounds), and the reference values."""
    rows = []
    for run in runs:
        row: dict[str, float] = {"x": x_value(run, key)}
        for m in metrics:
            row[m] = run.metrics.get(m, np.nan)
            for part in ("diff", "low", "high"):
                row[f"{m} vs zero-shot {part}"] = run.metrics.get(f"vs_zero_shot/{m}/{part}", np.nan)
            for name, pattern in REFERENCES:
                row[f"{m} {name}"] = run.metrics.get(pattern.format(m=m), np.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    missing = [m for m in metrics if df[m].isna().all()]
    if missing:
        raise CurveError(f"no run has {', '.join(missing)}; choose --metrics among the keys of metrics.json")
    counts = df.groupby("x").size().rename("n_runs")
    return df.groupby("x").mean().join(counts).reset_index()


def _markdown(df: pd.DataFrame, key: str, metrics: Sequence[str], root: Path) -> str:
    lines = [f"# Learning curve: {', '.join(metrics)} against `{key}`", "", f"Runs under `{root}`. "
             "Each point's interval is the run's paired 95% bootstrap interval over users against the "
             "untrained model (zero-shot) on the same rows; * marks an interval that excludes 0.", ""]
    for m in metrics:
        lines += [f"## {m}", "", f"| {key} | runs | {m} | vs zero-shot [95% CI] | chance | zero-shot | sequential model |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in df.iterrows():
            low, high = r[f"{m} vs zero-shot low"], r[f"{m} vs zero-shot high"]
            sig = "*" if np.isfinite(low) and (low > 0 or high < 0) else ""
            diff = (f"{r[f'{m} vs zero-shot diff']:+.3f} [{low:+.3f}, {high:+.3f}]{sig}"
                    if np.isfinite(low) else "-")
            refs = " | ".join(f"{r[f'{m} {n}']:.3f}" if np.isfinite(r[f"{m} {n}"]) else "-" for n, _ in REFERENCES)
            lines.append(f"| {r['x']:g} | {int(r['n_runs'])} | {r[m]:.3f} | {diff} | {refs} |")
        lines.append("")
    lines.append("![learning curve](learning_curve.png)")
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, key: str, metrics: Sequence[str], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(metrics), 4.0))
    styles = {"chance": ("grey", ":"), "zero-shot": ("tab:red", "--"), "sequential model": ("tab:green", "-.")}
    for i, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        x = df["x"].to_numpy()
        y = df[m].to_numpy()
        low = y - df[f"{m} vs zero-shot diff"].to_numpy() + df[f"{m} vs zero-shot low"].to_numpy()
        high = y - df[f"{m} vs zero-shot diff"].to_numpy() + df[f"{m} vs zero-shot high"].to_numpy()
        ax.plot(x, y, "o-", color="tab:blue", label="trained")
        if np.isfinite(low).all():
            ax.fill_between(x, low, high, color="tab:blue", alpha=0.15, label="95% CI (paired vs zero-shot)")
        for name, _ in REFERENCES:
            level = df[f"{m} {name}"].mean()
            if np.isfinite(level):
                colour, style = styles[name]
                ax.axhline(level, color=colour, linestyle=style, label=f"{name} {level:.3f}")
        if len(x) > 1 and x.min() > 0 and x.max() / x.min() >= 8:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(m)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def write_curve(path: str | Path, key: str, metrics: Sequence[str] = DEFAULT_METRICS,
                out: str | Path | None = None) -> Path:
    """Write learning_curve.{csv,md,png} for the runs under ``path``; returns the markdown's path."""
    root = Path(path).resolve()
    runs = [load_run(p) for p in find_runs(root)]
    if not runs:
        raise NoRunsError(f"no run directory under {root}")
    for r in runs:
        if not r.ok:
            log.warning("skipping run %s: %s", r.path, (r.error or "").strip().splitlines()[-1:] or "")
    ok = [r for r in runs if r.ok]
    if not ok:
        raise CurveError(f"no finished run under {root}")
    df = curve_frame(ok, key, metrics)  # every check before anything is written
    out_dir = Path(out).resolve() if out is not None else root
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "learning_curve.csv", index=False)
    plot(df, key, metrics, out_dir / "learning_curve.png")
    md = out_dir / "learning_curve.md"
    md.write_text(_markdown(df, key, metrics, root))
    return md


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napo_lab.curve", description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a sweep directory whose runs vary one setting")
    parser.add_argument("--x", required=True, help="the dotted config key on the x axis, e.g. sft.train_limit")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help=f"comma-separated metric keys (default: {','.join(DEFAULT_METRICS)})")
    parser.add_argument("--out", default=None, help="output directory (default: PATH)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        md = write_curve(args.path, args.x, [m.strip() for m in args.metrics.split(",") if m.strip()], args.out)
    except (NoRunsError, CurveError) as exc:
        print(f"napo_lab.curve: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {md} (+ learning_curve.csv and learning_curve.png in {md.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
