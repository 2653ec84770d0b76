"""Every command docs/recpo.md, docs/dpo4rec.md and their README lines show, run as written with only
size-shrinking overrides added (the tiny random model, a few rows, short reasoning)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from napo_lab.run import execute
from tests.conftest import compose_cfg, needs_data

REPO = Path(__file__).resolve().parents[2]
SHRINK_RECPO = ["model=tiny_random", "trainer.enable_progress_bar=false", "logger=none", "seqrec.max_epochs=1",
                "dataset.recpo.max_train_rows=32", "sft.train_limit=8", "pref.train_limit=4", "sft.batch_size=4",
                "pref.batch_size=4", "dataset.test_limit=4", "eval.max_new_tokens=4", "data.eval_batch_size=4"]
SHRINK_DPO4REC = ["model=tiny_random", "trainer.enable_progress_bar=false", "logger=none", "dpo4rec.lists.n_users=8",
                  "dpo4rec.max_new_tokens=6", "dpo4rec.rounds=1", "dpo4rec.reranker.epochs=10"]


def commands(doc: str, needle: str = "") -> list[str]:
    """The ``python -m napo_lab.*`` lines of a markdown file's bash blocks (comments dropped)."""
    text = (REPO / doc).read_text()
    lines = [ln.split("#", 1)[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for ln in block.splitlines()]
    return [ln for ln in lines if ln.startswith("python -m napo_lab.") and needle in ln]


DOCUMENTED = sorted(set(commands("docs/recpo.md") + commands("docs/dpo4rec.md") + commands("README.md", "recpo_paper")
                        + commands("README.md", "dpo4rec")))


def test_the_docs_show_the_commands_this_file_runs():
    assert "python -m napo_lab.run loss=recpo_paper dataset=movielens_recpo" in DOCUMENTED
    assert "python -m napo_lab.run experiment=dpo4rec_small" in DOCUMENTED
    assert any(c.startswith("python -m napo_lab.run -m dataset=movielens_recpo loss=recpo_paper,sdpo") for c in DOCUMENTED)
    assert len(DOCUMENTED) == 5


# The sweep (a real 6-job multirun, ~45 s) runs with the slow tests (make test-slow), beside make test-docs,
# which runs it too; the single runs stay in make test.
@needs_data
@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow) if " -m " in c else c for c in DOCUMENTED])
def test_documented_command_runs(command, tmp_path, cache_dir):
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "napo_lab.run"]
    shrink = SHRINK_DPO4REC if "dpo4rec" in command else SHRINK_RECPO
    if args[3] == "-m":  # a sweep (the small RecPO-vs-S-DPO run): the real multirun, every job shrunk
        env = {**os.environ, "NAPO_LAB_CACHE_DIR": str(cache_dir), "WANDB_MODE": "offline"}
        proc = subprocess.run([sys.executable, *args[1:], *shrink, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs = [json.loads(m.read_text()) for m in (tmp_path / "sweep").glob("*/metrics.json")]
        assert len(runs) == 6 and all(0.0 <= r["test/hr@1"] <= 1.0 for r in runs)
        return
    out = tmp_path / "run"
    execute(compose_cfg([*args[3:], *shrink], out, cache_dir))
    metrics = json.loads((out / "metrics.json").read_text())
    key = "test/dpo4rec/round1/ndcg@5" if "dpo4rec" in command else "test/hr@1"
    assert 0.0 <= metrics[key] <= 1.0


@needs_data
def test_documented_prepare_command(tmp_path):
    text = (REPO / "docs/recpo.md").read_text().replace("\n", " ")
    assert "`python -m napo_lab.prepare dataset=movielens_recpo`" in text
    env = {**os.environ, "NAPO_LAB_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "napo_lab.prepare", "dataset=movielens_recpo",
                           "dataset.recpo.max_train_rows=16"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "movielens_recpo" in proc.stdout and "train" in proc.stdout
