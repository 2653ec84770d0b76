"""Every command that README.md, docs/preferdiff.md, docs/triplet_shapley.md and the study's README show
for PreferDiff, BPR-MF and LightGCN, run as written on the real data with only size-shrinking
overrides added (fewer epochs, fewer test rows, fewer Shapley orderings). The command text is read
from the document, so a document and its test cannot drift apart."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from napo_lab.run import execute
from tests.conftest import compose_cfg, needs_data

ROOT = Path(__file__).resolve().parents[2]
PD_SHRINK = ["model.max_epochs=1", "dataset.test_limit=16", "eval.splits=[test]", "logger=none"]
CF_SHRINK = ["model.max_epochs=2", "model.eval_every=1", "eval.splits=[test]", "logger=none"]
SHAPLEY_SHRINK = ["sampler.warmup_epochs=1", "sampler.refresh_every=2", "sampler.shapley.n_permutations=1"]

COMMANDS = [  # (document, command exactly as shown there)
    ("README.md", "python -m napo_lab.run model=preferdiff dataset=lastfm"),
    ("README.md", "python -m napo_lab.run model=bprmf sampler=triplet_shapley dataset=movielens"),
    ("docs/preferdiff.md", "python -m napo_lab.run model=preferdiff dataset=lastfm"),
    ("docs/preferdiff.md", "python -m napo_lab.run model=preferdiff model.hidden_size=256 model.lam=0.4 "
                           "model.guidance_w=2"),
    ("docs/triplet_shapley.md", "python -m napo_lab.run model=bprmf sampler=uniform dataset=movielens"),
    ("docs/triplet_shapley.md", "python -m napo_lab.run model=bprmf sampler=triplet_shapley dataset=movielens"),
    ("docs/triplet_shapley.md", "python -m napo_lab.run model=lightgcn sampler=triplet_shapley sampler.use=weight "
                                "dataset=movielens"),
]


def _shown(doc: str) -> list[str]:
    """The ``python -m napo_lab.run model=<preferdiff|bprmf|lightgcn> ...`` commands of a document, one
    per line, without a trailing comment (whitespace runs collapsed)."""
    lines = (ROOT / doc).read_text().splitlines()
    found = []
    for line in lines:
        line = line.split("#")[0].strip()
        if re.match(r"python -m napo_lab\.run (-m )?.*model=(preferdiff|bprmf|lightgcn)", line):
            found.append(" ".join(line.split()))
    return found


def test_every_shown_command_is_listed_here():
    """A new command in these documents must be added to COMMANDS (and so be run)."""
    listed = {(doc, cmd) for doc, cmd in COMMANDS}
    for doc in sorted({d for d, _ in COMMANDS}):
        for cmd in _shown(doc):
            assert (doc, cmd) in listed or cmd.startswith("python -m napo_lab.run -m"), (doc, cmd)


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("command", sorted({cmd for _, cmd in COMMANDS}))
def test_shown_command_runs(command, tmp_path):
    """Each distinct command once (README and docs share some)."""
    for doc in (d for d, c in COMMANDS if c == command):
        assert command in _shown(doc), f"{doc} no longer shows: {command}"
    overrides = shlex.split(command)[3:]
    if "model=preferdiff" in command:
        shrink = PD_SHRINK
    else:
        shrink = CF_SHRINK + (SHAPLEY_SHRINK if "sampler=triplet_shapley" in command else [])
    cfg = compose_cfg([*overrides, *shrink], tmp_path / "run", tmp_path / "cache")
    execute(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/full/ndcg@10"] <= 1.0 and 0.0 <= metrics["test/full/recall@20"] <= 1.0
    assert metrics["test/full/n"] > 0
    method = json.loads((tmp_path / "run" / "run_info.json").read_text())["method"]
    assert method.startswith(cfg.model.name)
    if "sampler=triplet_shapley" in command:
        assert metrics["shapley/rounds"] == 1 and method.endswith("resample" if "use=weight" not in command
                                                                  else "weight")
