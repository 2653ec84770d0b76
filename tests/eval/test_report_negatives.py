"""The study report (napo_lab.report_negatives) over hand-written run directories."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from napo_lab.report_negatives import claims, pareto, write_report


def _run(root, dataset, sampler, seed, hr, balance, head=0.3, tail=0.1, status="ok"):
    d = root / f"dataset={dataset},neg_sampler={sampler},seed={seed}"
    d.mkdir(parents=True)
    (d / "run_info.json").write_text(json.dumps({
        "dataset": dataset, "seed": seed, "status": status, "commit": "abc1234", "wall_time_s": 10.0,
        "overrides": [f"dataset={dataset}", f"neg_sampler={sampler}", f"seed={seed}"]}))
    metrics = {"test/full/hr@10": hr, "test/full/ndcg@10": hr / 2, "test/full/n": 100,
               "test/full/volume/head/hr@10": head, "test/full/volume/mid/hr@10": 0.2,
               "test/full/volume/tail/hr@10": tail, "test/full/volume/balance_ndcg@10": balance,
               "test/full/volume/balance_hr@10": balance, "seqrec/best_epoch": 3, "seqrec/train_seconds": 5}
    (d / "metrics.json").write_text(json.dumps(metrics))


def test_report_means_and_t_intervals(tmp_path):
    """HR@10 0.1, 0.2, 0.3 over three seeds: mean 0.2, sd 0.1, t(0.975, 2) = 4.3027:
    half-width 4.3027 * 0.1 / sqrt(3) = 0.24842."""
    for seed, hr in enumerate((0.1, 0.2, 0.3)):
        _run(tmp_path / "runs", "lastfm", "rns", seed, hr, 0.5)
    _run(tmp_path / "runs", "lastfm", "amns", 0, 0.4, 0.9)
    _run(tmp_path / "runs", "lastfm", "pns", 0, 0.0, 0.0, status="failed")
    cells = write_report(tmp_path / "runs", tmp_path / "out")
    rns = cells.set_index("sampler").loc["rns"]
    assert rns["n"] == 3 and rns["hr@10:mean"] == pytest.approx(0.2)
    assert rns["hr@10:ci95"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert math.isnan(cells.set_index("sampler").loc["amns", "hr@10:ci95"])  # one seed: no interval
    report = (tmp_path / "out" / "report.md").read_text()
    assert "0.2000 ± 0.2484" in report and "status failed" in report
    assert (tmp_path / "out" / "accuracy_vs_balance.png").stat().st_size > 0
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 4 and set(runs["sampler"]) == {"rns", "amns"}
    assert list(pd.read_csv(tmp_path / "out" / "report.csv").columns[:3]) == ["dataset", "sampler", "n"]


def test_claims_and_pareto():
    d = pd.DataFrame({"hr": [0.10, 0.08, 0.12, 0.05], "head": [0.3, 0.1, 0.2, 0.1],
                      "tail": [0.01, 0.05, 0.02, 0.04], "balance": [0.5, 0.8, 0.6, 0.4]},
                     index=["RNS", "PNS", "AMNS", "ANS"])
    c = claims({"x": d})["x"]
    assert c["rns_head"].startswith("yes") and c["amns_best"].startswith("yes: AMNS ranks 1/4")
    assert c["pns_trade"].startswith("yes") and c["ans_trade"].startswith("no")
    assert pareto(d["hr"].to_numpy(), d["balance"].to_numpy()).tolist() == [False, True, True, False]
