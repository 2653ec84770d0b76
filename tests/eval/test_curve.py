"""`python -m napo_lab.curve`: a metric against the setting a sweep varies, on runs the real pipeline
wrote (tiny model, two SFT budgets, references on), beside chance / zero-shot / SASRec."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread

from napo_lab.curve import main
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg

BUDGETS = (4, 8)


@pytest.fixture(scope="module")
def budgets(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("curve")
    root, cache = base / "runs", base / "cache"  # the cache sits beside the runs, owned by this fixture alone
    for n in BUDGETS:
        execute(compose_cfg([*TINY, "loss=sft", f"sft.train_limit={n}", "sft.epochs=1", "eval.protocol=ranking",
                             "seqrec.max_epochs=1"], root / f"sft_{n}", cache))
    return root


def test_curve_tabulates_each_budget_with_its_references(budgets: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main([str(budgets), "--x", "sft.train_limit", "--out", str(out)]) == 0
    assert "learning_curve.md" in capsys.readouterr().out
    df = pd.read_csv(out / "learning_curve.csv")
    assert df["x"].tolist() == list(BUDGETS) and df["n_runs"].tolist() == [1, 1]
    for n in BUDGETS:
        m = json.loads((budgets / f"sft_{n}" / "metrics.json").read_text())
        values = dict(zip(df.columns, df.loc[df["x"] == n].iloc[0]))
        assert values["test/rank/mrr"] == pytest.approx(m["test/rank/mrr"])
        assert values["test/rank/hr@1 chance"] == pytest.approx(m["ref/chance/test/rank/hr@1"])
        assert values["test/rank/mrr zero-shot"] == pytest.approx(m["ref/zero_shot/test/rank/mrr"])
        assert values["test/rank/mrr sequential model"] == pytest.approx(m["ref/seqrec/test/rank/mrr"])
        assert values["test/rank/mrr vs zero-shot low"] == pytest.approx(m["vs_zero_shot/test/rank/mrr/low"])
    md = (out / "learning_curve.md").read_text()
    assert "| sft.train_limit | runs | test/rank/mrr |" in md and "\n| 4 | 1 |" in md and "\n| 8 | 1 |" in md
    image = imread(out / "learning_curve.png")
    assert image.shape[0] > 100 and image.std() > 0  # drawn, not blank


def test_curve_refuses_what_it_cannot_draw_and_writes_nothing(budgets: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main([str(budgets), "--x", "loss.name", "--out", str(out)]) == 2
    assert "--x needs a numeric setting" in capsys.readouterr().err
    assert main([str(budgets), "--x", "sft.train_limit", "--metrics", "test/nope", "--out", str(out)]) == 2
    assert "no run has test/nope" in capsys.readouterr().err
    assert main([str(tmp_path / "empty"), "--x", "sft.train_limit"]) == 2
    assert "no run directory" in capsys.readouterr().err
    assert not out.exists()


def test_overlap_split_of_the_lastfm_curve_on_real_runs(budgets: Path, tmp_path: Path, capsys):
    """experiments/lastfm_overlap.py: seen/unseen transitions partition the rows, and the "all" row is
    the run's own metric against its cached zero-shot reference."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lastfm_overlap", Path(__file__).parents[2] / "experiments" / "lastfm_overlap.py")
    overlap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overlap)
    assert overlap.seen_transitions(pd.DataFrame({"history": [[1, 2], [5]], "target": [3, 1]})) == {(1, 2), (2, 3), (5, 1)}
    cache = budgets.parent / "cache"  # the fixture's own cache (not another fixture's on this worker)
    prepared = next((cache / "prepared").iterdir())
    out = tmp_path / "overlap.md"
    assert overlap.main([str(budgets), "--prepared", str(prepared), "--zero-shot", str(cache / "zero_shot"),
                         "--out", str(out)]) == 0
    table = out.read_text().splitlines()
    for n in BUDGETS:
        m = json.loads((budgets / f"sft_{n}" / "metrics.json").read_text())
        rows = {r.split(" | ")[1]: r.split(" | ") for r in table if r.startswith(f"| {n} |")}
        assert set(rows) == {"all", "seen", "unseen"}
        assert int(rows["seen"][2]) + int(rows["unseen"][2]) == int(rows["all"][2]) == m["test/rank/n"]
        assert float(rows["all"][3]) == pytest.approx(m["test/rank/mrr"], abs=5e-4)
        assert float(rows["all"][4]) == pytest.approx(m["ref/zero_shot/test/rank/mrr"], abs=5e-4)
