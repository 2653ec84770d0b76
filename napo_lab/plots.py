"""The report's plots: HR@1 by method, HR@1 by popularity band, and preference-stage training curves.

Each function returns the PNG's path, or None when the runs hold no data for it (the report then
notes the plot as skipped instead of drawing an empty one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napo_lab.rundir import PREF, TRAIN_METRICS

log = logging.getLogger(__name__)

BANDS = ("head", "mid", "tail")



def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _colours(names: Sequence[str]) -> dict[str, Any]:
    """One colour per method across every panel, so a method looks the same everywhere."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, tuple[list[float], list[float]]],
                  colours: dict[str, Any]) -> None:
    """Bars per group (x) and series (colour); NaN means no bar, a NaN std no error bar."""
    series = {k: v for k, v in series.items() if not np.all(np.isnan(np.asarray(v[0], dtype=float)))}
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for j, (name, (means, stds)) in enumerate(series.items()):
        m = np.asarray(means, dtype=float)
        s = np.nan_to_num(np.asarray(stds, dtype=float))
        keep = ~np.isnan(m)
        bars = ax.bar(x[keep] + (j - (len(series) - 1) / 2) * width, m[keep], width,
                      yerr=s[keep], capsize=3, label=name, color=colours.get(name))
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, groups)
    if series:
        ax.legend(fontsize=8)


def plot_hr1_by_method(df: pd.DataFrame, split: str, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    key = next((k for k in (f"{split}/hr@1", f"{split}/rank/hr@1", f"{split}/rank_norm/hr@1")
                if f"{k}:mean" in df and df[f"{k}:n"].sum() > 0), None)
    if key is None:
        return None
    datasets = list(dict.fromkeys(df["dataset"]))
    methods = list(dict.fromkeys(df["method"]))
    series = {}
    for m in methods:
        sub = [df[(df["dataset"] == d) & (df["method"] == m)] for d in datasets]
        series[m] = ([s[f"{key}:mean"].iloc[0] if len(s) else np.nan for s in sub],
                     [s[f"{key}:std"].iloc[0] if len(s) else np.nan for s in sub])
    fig = Figure(figsize=(max(6.0, 1.2 * len(datasets) * max(len(methods), 1) * 0.6), 4.5))
    ax = fig.add_subplot()
    _grouped_bars(ax, datasets, series, _colours(methods))
    ax.set_ylabel(key.split("/", 1)[1])
    ax.set_title(f"{key} by method (mean ± std over seeds)")
    return _save(fig, path)


def plot_hr1_by_band(df: pd.DataFrame, split: str, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    prefix = next((p for p in (f"{split}/band", f"{split}/rank/band", f"{split}/rank_norm/band")
                   if any(f"{p}/{b}/hr@1:mean" in df and df[f"{p}/{b}/hr@1:n"].sum() > 0 for b in BANDS)),
                  None)
    if prefix is None:
        return None
    datasets = list(dict.fromkeys(df["dataset"]))
    colours = _colours(list(dict.fromkeys(df["method"])))
    fig = Figure(figsize=(6.0 * len(datasets), 4.5))
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), i + 1)
        sub = df[df["dataset"] == dataset]
        series = {}
        for _, row in sub.iterrows():
            series[str(row["method"])] = (
                [row.get(f"{prefix}/{b}/hr@1:mean", np.nan) for b in BANDS],
                [row.get(f"{prefix}/{b}/hr@1:std", np.nan) for b in BANDS],
            )
        _grouped_bars(ax, list(BANDS), series, colours)
        ax.set_title(f"{dataset}: {prefix.split('/', 1)[1]}/<band>/hr@1")
        ax.set_xlabel("popularity band of the target")
        ax.set_ylabel("HR@1")
    return _save(fig, path)


def _find_column(columns: Sequence[str], suffix: str) -> str | None:
    exact = [c for c in columns if c == f"train/{suffix}"]
    return exact[0] if exact else next((c for c in columns if str(c).endswith(suffix)), None)


def plot_training_curves(runs: Sequence[Any], labels: Sequence[str], path: Path) -> Path | None:
    """Reward margin and accuracy vs step in the preference stage, averaged over seeds."""
    from matplotlib.figure import Figure

    curves: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for run, label in zip(runs, labels):
        csv = run.path / TRAIN_METRICS
        if not csv.is_file():
            continue
        try:
            tm = pd.read_csv(csv)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            log.warning("skipping unreadable %s: %s", csv, exc)
            continue
        if "step" not in tm:
            continue
        if "stage" in tm:
            tm = tm[tm["stage"].astype(str) == PREF]
        picked = {}
        for name in ("rewards/margin", "rewards/accuracy"):
            col = _find_column(list(tm.columns), name)
            if col is not None:
                picked[name] = pd.to_numeric(tm[col], errors="coerce")
        if not picked:
            continue
        frame = pd.DataFrame({"step": pd.to_numeric(tm["step"], errors="coerce"), **picked})
        curves.setdefault((run.dataset, label), []).append(frame)
    if not curves:
        return None
    datasets = list(dict.fromkeys(d for d, _ in curves))
    colours = _colours(list(dict.fromkeys(label for _, label in curves)))
    fig = Figure(figsize=(11.0, 3.8 * len(datasets)))
    for i, dataset in enumerate(datasets):
        for j, name in enumerate(("rewards/margin", "rewards/accuracy")):
            ax = fig.add_subplot(len(datasets), 2, 2 * i + j + 1)
            for (d, label), frames in curves.items():
                if d != dataset:
                    continue
                data = pd.concat(frames)
                if name not in data:
                    continue
                mean = data.dropna(subset=[name, "step"]).groupby("step")[name].mean()
                if len(mean):
                    ax.plot(mean.index, mean.to_numpy(), label=f"{label} ({len(frames)} runs)",
                            color=colours[label])
            ax.set_title(f"{dataset}: {name} (preference stage)")
            ax.set_xlabel("step")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    return _save(fig, path)
