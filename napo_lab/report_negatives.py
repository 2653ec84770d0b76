"""Report of the negative-sampling study: ``python -m napo_lab.report_negatives DIR [--out OUT]``.

Reads every run directory under DIR (``run_info.json`` + ``metrics.json`` + ``config.yaml``, as
napo_lab.run writes them), groups the sequential-model runs by (dataset, sampler) and writes to OUT:

* ``runs.csv``: one row per run (dataset, sampler, seed, the test metrics, best epoch, seconds);
* ``report.csv``: one row per (dataset, sampler): ``<metric>:mean``, ``<metric>:ci95`` (half-width of
  the 95 % t-interval over seeds, t_{0.975, n-1} * sd / sqrt(n); empty with one seed) and ``n``;
* ``report.md``: the tables, the comparison with the paper's published per-run results
  (``experiments/negative_sampling/paper_means.csv``, means of apple/ml-negative-sampling
  ``data/all_results.csv``) and the failed runs;
* ``accuracy_vs_balance.png``: NDCG@10 against balance (the paper's scatter: one panel per dataset,
  one point per sampler, 95 % CI bars, Pareto-efficient samplers as triangles), and the same for HR@10.

Metrics are the test role's full-catalogue ones (``test/full/...``): HR@10, NDCG@10 and, per
interaction-volume cohort of the target (head / mid / tail thirds of training interactions), HR@10 and
NDCG@10, plus balance = 1 - Gini over the three cohort NDCG@10 values (the paper's column) and over the
HR@10 values. A cell's balance is the mean of its runs' balances, as the paper averages them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SAMPLERS = ("rns", "pns", "bns", "mns", "ans", "amns")
COHORTS = ("head", "mid", "tail")
#: column -> metrics.json key (test role, full catalogue)
METRICS: dict[str, str] = {
    "hr@10": "test/full/hr@10",
    "ndcg@10": "test/full/ndcg@10",
    **{f"{c}_hr@10": f"test/full/volume/{c}/hr@10" for c in COHORTS},
    **{f"{c}_ndcg@10": f"test/full/volume/{c}/ndcg@10" for c in COHORTS},
    "balance": "test/full/volume/balance_ndcg@10",
    "balance_hr": "test/full/volume/balance_hr@10",
    "best_epoch": "seqrec/best_epoch",
    "train_seconds": "seqrec/train_seconds",
}
PAPER = Path(__file__).resolve().parent.parent / "experiments" / "negative_sampling" / "paper_means.csv"
PAPER_DATASETS = {"Movielens": "ML-10M", "RetailRocket": "RetailRocket", "Beauty": "Beauty"}


def t_quantile(df: int) -> float:
    """t_{0.975, df} (scipy when present, else a table that covers 1..30 and the normal limit)."""
    try:
        from scipy import stats

        return float(stats.t.ppf(0.975, df))
    except ImportError:  # pragma: no cover
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
                 10: 2.228, 14: 2.145, 19: 2.093, 29: 2.045}
        return table.get(df, 1.96 if df > 29 else table[min(k for k in table if k >= df)])


def ci95(values: pd.Series) -> float:
    v = values.dropna().to_numpy(dtype=float)
    if len(v) < 2:
        return float("nan")
    return t_quantile(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))


def _sampler(run_dir: Path, info: dict[str, Any]) -> str | None:
    for o in info.get("overrides", []):
        if o.startswith("neg_sampler="):
            return o.split("=", 1)[1]
    cfg = run_dir / "config.yaml"
    if cfg.is_file():
        from omegaconf import OmegaConf

        ns = OmegaConf.load(cfg).get("neg_sampler")
        if ns:
            return str(ns.get("name") or ns.get("sampler"))
    return None


def load_runs(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """(one row per successful sampler run, descriptions of failed / unreadable runs)."""
    rows, failed = [], []
    for info_path in sorted(Path(root).rglob("run_info.json")):
        run_dir = info_path.parent
        try:
            info = json.loads(info_path.read_text())
            sampler = _sampler(run_dir, info)
            if sampler is None:
                continue
            if info.get("status") != "ok":
                failed.append(f"{run_dir}: status {info.get('status')} ({info.get('error')})")
                continue
            metrics = json.loads((run_dir / "metrics.json").read_text())
        except (OSError, ValueError) as err:
            failed.append(f"{run_dir}: unreadable ({err})")
            continue
        row = {"dataset": info.get("dataset"), "sampler": sampler, "seed": int(info.get("seed", -1)),
               "wall_time_s": float(info.get("wall_time_s", float("nan"))), "commit": info.get("commit"),
               "run_dir": str(run_dir)}
        row |= {col: float(metrics.get(key, float("nan"))) for col, key in METRICS.items()}
        row["test_rows"] = float(metrics.get("test/full/n", float("nan")))
        rows.append(row)
    return pd.DataFrame(rows), failed


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, sampler): n, and for every metric its mean and 95 % CI half-width."""
    out = []
    order = {s: i for i, s in enumerate(SAMPLERS)}
    for (dataset, sampler), g in runs.groupby(["dataset", "sampler"], sort=True):
        row: dict[str, Any] = {"dataset": dataset, "sampler": sampler, "n": len(g)}
        for col in METRICS:
            row[f"{col}:mean"] = float(g[col].mean())
            row[f"{col}:ci95"] = ci95(g[col])
        out.append(row)
    df = pd.DataFrame(out)
    if len(df):
        df = df.sort_values(["dataset", "sampler"], key=lambda s: s.map(order) if s.name == "sampler" else s)
    return df.reset_index(drop=True)


def _fmt(mean: float, ci: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" if not np.isfinite(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def cell_table(cells: pd.DataFrame, dataset: str) -> list[str]:
    cols = ["hr@10", "ndcg@10", "head_hr@10", "mid_hr@10", "tail_hr@10", "head_ndcg@10", "mid_ndcg@10",
            "tail_ndcg@10", "balance", "balance_hr"]
    head = "| sampler | n | " + " | ".join(cols) + " | best epoch |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    sub = cells[cells["dataset"] == dataset]
    best = {c: sub[f"{c}:mean"].max() for c in ("hr@10", "ndcg@10", "balance")}
    for r in sub.to_dict("records"):
        vals = []
        for c in cols:
            text = _fmt(r[f"{c}:mean"], r[f"{c}:ci95"])
            vals.append(f"**{text}**" if c in best and r[f"{c}:mean"] == best[c] else text)
        lines.append(f"| {r['sampler'].upper()} | {r['n']} | " + " | ".join(vals)
                     + f" | {r['best_epoch:mean']:.1f} |")
    return lines


def _rename(df: pd.DataFrame) -> dict[str, pd.Series]:
    return {k: df[c] for k, c in (("hr", "hr@10:mean"), ("head", "head_hr@10:mean"), ("tail", "tail_hr@10:mean"),
                                  ("balance", "balance:mean"))}


def claims(per_dataset: dict[str, pd.DataFrame]) -> dict[str, dict[str, str]]:
    """The three statements of the issue, checked per dataset. ``per_dataset`` maps a dataset label to a
    frame indexed by sampler (upper case) with columns hr, head, tail, balance."""
    out: dict[str, dict[str, str]] = {}
    for name, d in per_dataset.items():
        res: dict[str, str] = {}
        if {"RNS"} <= set(d.index):
            r = d.loc["RNS"]
            ratio = r["head"] / r["tail"] if r["tail"] > 0 else float("inf")
            res["rns_head"] = (f"{'yes' if r['head'] > r['tail'] else 'no'}: head {r['head']:.4f} vs tail "
                               f"{r['tail']:.4f} ({'inf' if not np.isfinite(ratio) else f'{ratio:.1f}x'})")
        if "AMNS" in d.index:
            rank = int((d["hr"] > d.loc["AMNS", "hr"]).sum()) + 1
            top = d["hr"].idxmax()
            res["amns_best"] = (f"{'yes' if rank <= 2 else 'no'}: AMNS ranks {rank}/{len(d)} "
                                f"(HR@10 {d.loc['AMNS', 'hr']:.4f}; best {top} {d['hr'].max():.4f})")
        if "RNS" in d.index:
            for s in ("PNS", "ANS"):
                if s in d.index:
                    dh, db = d.loc[s, "hr"] - d.loc["RNS", "hr"], d.loc[s, "balance"] - d.loc["RNS", "balance"]
                    verdict = "yes" if dh < 0 and db > 0 else "no"
                    res[f"{s.lower()}_trade"] = (f"{verdict}: HR@10 {dh:+.4f}, balance {db:+.3f} vs RNS")
        out[name] = res
    return out


def paper_frames(path: Path = PAPER) -> dict[str, pd.DataFrame]:
    if not path.is_file():
        return {}
    p = pd.read_csv(path)
    out = {}
    for ds, label in PAPER_DATASETS.items():
        sub = p[p["dataset"] == ds].set_index("method")
        out[label] = pd.DataFrame({"hr": sub["total_hr"], "head": sub["head_hr"], "tail": sub["tail_hr"],
                                   "balance": sub["balance"]})
    return out


def ours_frames(cells: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = {}
    for ds, sub in cells.groupby("dataset"):
        sub = sub.set_index(sub["sampler"].str.upper())
        out[str(ds)] = pd.DataFrame(_rename(sub))
    return out


CLAIMS = (("rns_head", "random negatives (RNS) favour head items: head HR@10 > tail HR@10"),
          ("amns_best", "AMNS at or near the best overall HR@10 (rank <= 2 of 6)"),
          ("pns_trade", "PNS trades accuracy for balance (lower HR@10, higher balance than RNS)"),
          ("ans_trade", "ANS trades accuracy for balance (lower HR@10, higher balance than RNS)"))


def comparison_lines(cells: pd.DataFrame) -> list[str]:
    paper, ours = claims(paper_frames()), claims(ours_frames(cells))
    lines = ["| statement | " + " | ".join(f"paper: {k}" for k in paper) + " | "
             + " | ".join(f"here: {k}" for k in ours) + " |",
             "|" + "---|" * (1 + len(paper) + len(ours))]
    for key, text in CLAIMS:
        row = [text] + [paper[k].get(key, "-") for k in paper] + [ours[k].get(key, "-") for k in ours]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def pareto(acc: np.ndarray, bal: np.ndarray) -> np.ndarray:
    """True where no other point is at least as good on both and better on one."""
    pts = np.column_stack([acc, bal])
    keep = np.ones(len(pts), dtype=bool)
    for i, p in enumerate(pts):
        dominated = np.all(pts >= p, axis=1) & np.any(pts > p, axis=1)
        keep[i] = not dominated.any()
    return keep


def plot(cells: pd.DataFrame, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        log.warning("matplotlib missing: no plot")
        return None
    datasets = sorted(cells["dataset"].unique())
    fig, axes = plt.subplots(2, len(datasets), figsize=(5.2 * len(datasets), 8.4), squeeze=False)
    for row, metric in enumerate(("ndcg@10", "hr@10")):
        for col, ds in enumerate(datasets):
            ax = axes[row][col]
            sub = cells[cells["dataset"] == ds]
            acc, bal = sub[f"{metric}:mean"].to_numpy(), sub["balance:mean"].to_numpy()
            front = pareto(acc, bal)
            for i, d in enumerate(sub.to_dict("records")):
                ax.errorbar(d["balance:mean"], d[f"{metric}:mean"],
                            xerr=np.nan_to_num(d["balance:ci95"]), yerr=np.nan_to_num(d[f"{metric}:ci95"]),
                            marker="^" if front[i] else "o", color="C0" if front[i] else "C1", capsize=3)
                ax.annotate(d["sampler"].upper(), (d["balance:mean"], d[f"{metric}:mean"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=9)
            ax.set_title(ds)
            ax.set_xlabel("balance (1 - Gini over cohort NDCG@10)")
            ax.set_ylabel(f"{metric.upper()} (full catalogue)")
            ax.grid(alpha=0.3)
    fig.suptitle("Accuracy vs balance per sampler (mean, 95% CI over seeds; triangles = Pareto-efficient)")
    fig.tight_layout()
    path = Path(out) / "accuracy_vs_balance.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(root: Path, out: Path, title: str = "Negative-sampling study") -> pd.DataFrame:
    runs, failed = load_runs(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if runs.empty:
        raise SystemExit(f"no sampler runs under {root}")
    runs.sort_values(["dataset", "sampler", "seed"]).to_csv(out / "runs.csv", index=False, float_format="%.6g")
    cells = summarise(runs)
    cells.to_csv(out / "report.csv", index=False, float_format="%.6g")
    plot(cells, out)
    commits = sorted({str(c) for c in runs["commit"].dropna()})
    seeds_per_dataset = ", ".join(f"{d} {n}" for d, n in runs.groupby("dataset")["seed"].nunique().items())
    lines = [f"# {title}", "",
             f"{len(runs)} runs (seeds per dataset: {seeds_per_dataset}), commit(s) {', '.join(commits)}. "
             "Test metrics over the whole catalogue; mean ± 95 % CI half-width over seeds (t-interval). "
             "Cohorts = interaction-volume thirds (not napo_lab's item-share bands). balance = 1 - Gini "
             "over the cohort NDCG@10 values (the paper's column); balance_hr over HR@10. "
             "Bold: best mean per dataset.", ""]
    for ds in sorted(cells["dataset"].unique()):
        rows = int(runs.loc[runs["dataset"] == ds, "test_rows"].iloc[0])
        lines += [f"## {ds} ({rows} test rows)", "", *cell_table(cells, ds), ""]
    lines += ["## Against the paper's published runs", "",
              "Paper: means of apple/ml-negative-sampling `data/all_results.csv` (ML-10M, RetailRocket, "
              "Beauty; 10-20 runs per cell). Here: the table above.", "", *comparison_lines(cells), "",
              "![accuracy vs balance](accuracy_vs_balance.png)", ""]
    if failed:
        lines += ["## Failed or unreadable runs", "", *[f"- {f}" for f in failed], ""]
    (out / "report.md").write_text("\n".join(lines))
    return cells


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a sweep directory (or any tree of run directories)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: ROOT)")
    args = parser.parse_args(argv)
    write_report(args.root, args.out or args.root)
    log.info("wrote %s", (args.out or args.root) / "report.md")


if __name__ == "__main__":
    main()
