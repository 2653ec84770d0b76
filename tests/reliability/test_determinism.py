"""The same command with the same seed gives identical metrics and weights on CPU."""

from __future__ import annotations

import json

from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg


def test_same_command_same_seed_gives_identical_metrics(tmp_path, cache_dir):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        # separate caches: both runs really train (nothing reused from the other)
        execute(compose_cfg([*TINY, "loss=sft", "seed=3", "eval.protocol=both"], out, tmp_path / f"cache_{name}"))
        m = json.loads((out / "metrics.json").read_text())
        assert m["sft/reused_cache"] == 0.0
        runs.append({k: v for k, v in m.items() if "seconds" not in k and "wall" not in k})
    assert runs[0] == runs[1]
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").read_bytes() == \
           (tmp_path / "b" / "adapter" / "adapter_model.safetensors").read_bytes()
