"""S-DPO's all-window LastFM test shares transitions with the training windows. This splits each run's
test rows into those whose (last history item -> target) transition occurs in a training sequence
("seen") and the rest ("unseen"), and gives each subset's metric with the paired 95% interval against
the untrained model (zero-shot) on the same rows.

    python experiments/lastfm_overlap.py <sweep dir> --prepared <cache>/prepared/lastfm-<hash> \
        --zero-shot <cache>/zero_shot/<key>/predictions_test.parquet [--out table.md]

The zero-shot table is the cached reference of the runs (the one with the same rows); --zero-shot may
also be a directory, searched for the predictions table with the same rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from napo_lab.metrics.paired import compare, per_user, same_rows
from napo_lab.report import find_runs, load_run
from napo_lab.rundir import CONFIG, predictions_file

METRICS = ("rank/mrr", "rank/hr@1")


def seen_transitions(train: pd.DataFrame) -> set[tuple[int, int]]:
    """Every consecutive (item, next item) in the training sequences (history + target)."""
    pairs: set[tuple[int, int]] = set()
    for history, target in zip(train["history"], train["target"]):
        seq = [*map(int, history), int(target)]
        pairs.update(zip(seq[:-1], seq[1:]))
    return pairs


def seen_mask(pred: pd.DataFrame, pairs: set[tuple[int, int]]) -> np.ndarray:
    return np.array([(int(h[-1]), int(t)) in pairs for h, t in zip(pred["history"], pred["target"])])


def find_zero_shot(path: Path, like: pd.DataFrame) -> pd.DataFrame:
    candidates = [path] if path.is_file() else sorted(path.rglob(predictions_file("test")))
    for p in candidates:
        table = pd.read_parquet(p)
        if same_rows(table, like):
            return table
    raise SystemExit(f"no zero-shot predictions with the runs' rows under {path}")


def rows(sweep: Path, prepared: Path, zero_shot: Path, x_key: str) -> list[dict]:
    from omegaconf import OmegaConf

    pairs = seen_transitions(pd.read_parquet(prepared / "train.parquet"))
    out = []
    for run_dir in find_runs(sweep):
        run = load_run(run_dir)
        if not run.ok:
            continue
        pred = pd.read_parquet(run_dir / predictions_file("test"))
        zs = find_zero_shot(zero_shot, pred)
        seen = seen_mask(pred, pairs)
        x = OmegaConf.select(OmegaConf.load(run_dir / CONFIG), x_key)
        for subset, mask in (("all", np.ones(len(pred), bool)), ("seen", seen), ("unseen", ~seen)):
            a, b = pred[mask].reset_index(drop=True), zs[mask].reset_index(drop=True)
            row = {x_key: x, "subset": subset, "n_users": int(mask.sum())}
            for m in METRICS:
                d = compare([a], [b], m, paired_seeds=True)
                row[m] = float(np.mean(per_user(a, m)))
                row[f"{m} zero-shot"] = float(np.mean(per_user(b, m)))
                row[f"{m} vs zero-shot"] = f"{d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{'*' if d.significant else ''}"
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--prepared", type=Path, required=True, help="the prepared LastFM dir (has train.parquet)")
    parser.add_argument("--zero-shot", type=Path, required=True, help="zero-shot predictions_test.parquet or a dir")
    parser.add_argument("--x", default="sft.train_limit", help="the setting the sweep varies")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    table = pd.DataFrame(rows(args.sweep, args.prepared, args.zero_shot, args.x)).sort_values([args.x, "subset"])
    fmt = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in table.to_numpy().ravel()]
    cells = np.array(fmt, dtype=object).reshape(table.shape)
    md = "\n".join(["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns),
                     *("| " + " | ".join(r) + " |" for r in cells)])
    print(md)
    if args.out:
        args.out.write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
