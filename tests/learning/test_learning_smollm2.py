"""The embedded SmolLM2-135M learns to recommend, on a budget CI can afford.

`python -m napo_lab.run experiment=learning_synthetic` exactly as docs/learning.md shows it, with
size-shrinking overrides only: a smaller world (2 item chains of 12 instead of 8 of 8, so each
transition is seen more often), fewer training examples and test users, the ranking protocol. The run
must land far above chance (1/20) and above the untrained model with a paired 95% interval over users
that excludes 0 (both printed by the run itself, see napo_lab/recipe/references.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import needs_smollm2

SHRINK = ["dataset.n_clusters=2", "dataset.cluster_size=12", "sft.train_limit=200", "sft.epochs=1",
          "eval=ranking", "dataset.test_limit=60", "logger=none", "trainer.enable_progress_bar=false"]


@needs_smollm2
def test_smollm2_learns_the_synthetic_chains_on_a_ci_budget(tmp_path, cache_dir):
    out = tmp_path / "run"
    env = {**os.environ, "NAPO_LAB_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-m", "napo_lab.run", "experiment=learning_synthetic", *SHRINK,
                           f"hydra.run.dir={out}"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["test/rank/n"] == 60 and m["ref/chance/test/rank/hr@1"] == 0.05
    assert m["test/rank/hr@1"] >= 0.3, m["test/rank/hr@1"]  # 6x chance
    assert m["vs_zero_shot/test/rank/mrr/low"] > 0, {k: v for k, v in m.items() if "mrr" in k}
    # the run says what its number means, on the terminal too
    assert "chance" in done.stdout and "zero-shot" in done.stdout
