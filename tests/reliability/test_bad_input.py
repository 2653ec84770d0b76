"""Bad input gets one short paragraph naming the fix, a non-zero exit, no traceback, no half output."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from napo_lab.errors import ConfigError
from napo_lab.recipe.validate import validate
from tests.conftest import TINY, compose_cfg


def _cli(args, tmp_path, **env):
    return subprocess.run([sys.executable, "-m", "napo_lab.run", f"hydra.run.dir={tmp_path / 'run'}", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NAPO_LAB_OFFLINE": "1", "HF_HUB_OFFLINE": "1", **env})


def test_unknown_option_lists_the_valid_ones(tmp_path):
    done = _cli(["loss=nope"], tmp_path)
    assert done.returncode != 0
    assert "nope" in done.stderr and "sdpo" in done.stderr and "napo" in done.stderr
    assert "Traceback" not in done.stderr


BAD_VALUES = [
    ("loss.objective.beta=0", "beta"),
    ("loss.num_negatives=0", "needs K >= 1"),  # K = 0: an identically-0 loss that trains nothing
    ("pref.lr=-1", "pref.lr=-1"),
    ("sft.batch_size=0", "sft.batch_size=0"),
    ("sft.lr=abc", "expected a number"),
]


@pytest.mark.parametrize("override, needle", [*BAD_VALUES, ("loss.num_negatives=20",
                                                            "K must be < dataset.n_candidates=20")])
def test_each_invalid_value_is_named(tmp_path, cache_dir, override, needle):
    cfg = compose_cfg([*TINY, "loss=sdpo", override], tmp_path, cache_dir)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate(cfg)


def test_invalid_values_exit_2_before_loading_anything_all_named_at_once(tmp_path):
    """The command line: one paragraph naming every bad value (not only the first), exit 2, the run
    recorded as failed, no metrics."""
    done = _cli(["model=tiny_random", "dataset=synthetic", "loss=sdpo", *(o for o, _ in BAD_VALUES)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    for _, needle in BAD_VALUES:
        assert needle in done.stderr, (needle, done.stderr)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["status"] == "failed" and not (tmp_path / "run" / "metrics.json").exists()


def test_napo_rho_outside_range(tmp_path, cache_dir):
    cfg = compose_cfg([*TINY, "loss=napo", "loss.objective.rho=1.5"], tmp_path, cache_dir)
    with pytest.raises(ConfigError, match="rho"):
        validate(cfg)


def test_unknown_hub_model_offline_says_what_to_do(tmp_path):
    done = _cli(["model=hf", "model.loader.name_or_path=someone/no-such-model", "dataset=synthetic", "loss=sft",
                 "sft.train_limit=4"], tmp_path)
    assert done.returncode == 2
    assert "someone/no-such-model" in done.stderr and "local directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_data_directory(tmp_path):
    done = _cli(["model=tiny_random", "dataset=lastfm", "loss=sft", f"paths.data_dir={tmp_path / 'nowhere'}",
                 f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path)
    assert done.returncode == 2
    assert "NAPO_LAB_DATA_DIR" in done.stderr or "paths.data_dir" in done.stderr
    assert "Traceback" not in done.stderr


def test_debug_true_shows_the_traceback(tmp_path):
    done = _cli(["model=tiny_random", "dataset=synthetic", "loss=sdpo", "pref.lr=-1", "debug=true"], tmp_path)
    assert done.returncode == 2 and "Traceback" in done.stderr


FUZZ_KEYS = {
    "sft.lr": [0, -1e-3, "x", None, True], "pref.batch_size": [0, -3, "many", 2.5], "sft.epochs": [0, -1, "ten"],
    "loss.num_negatives": [20, 100, -1, "k", 2.5], "loss.objective.beta": [0, -1.0], "forward": ["sideways", 3],
    "dataset.n_candidates": [1, 0, "twenty"], "pref.train_limit": [0, -5],
}


def test_fuzz_malformed_configs_always_give_a_config_error(tmp_path, cache_dir):
    base = compose_cfg([*TINY, "loss=sdpo"], tmp_path, cache_dir)
    rng = random.Random(0)
    for _ in range(40):
        cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=True))
        picks = rng.sample(sorted(FUZZ_KEYS), k=rng.randint(1, 3))
        for key in picks:
            OmegaConf.update(cfg, key, rng.choice(FUZZ_KEYS[key]), force_add=True)
        with pytest.raises(ConfigError) as err:
            validate(cfg)
        # every message names the option: the full key, or the objective's own argument name
        assert any(key in str(err.value) or (key.startswith("loss.objective.") and key.split(".")[-1]
                                              in str(err.value)) for key in picks), (picks, str(err.value))
