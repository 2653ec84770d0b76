"""Config-level promises about the losses (issue 13): settings that would train nothing or invert
the method are refused before anything loads, the metric a sweeper optimises is a validation metric
everywhere, and the RosePO preset describes its negatives as the sampler draws them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from omegaconf import OmegaConf

from napo_lab import CONF_DIR
from napo_lab.data.samplers import NegativeSampler
from napo_lab.errors import ConfigError
from napo_lab.recipe.validate import validate
from tests.conftest import TINY, compose_cfg

REPO = CONF_DIR.parent
PREFERENCE_LOSSES = sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml")
                           if OmegaConf.load(p).get("stage", "pref") == "pref")


def test_every_preference_preset_is_listed():
    assert {"dpo", "sdpo", "napo", "napo_official", "rosepo", "cdpo", "ipo", "simpo", "dmpo",
            "recpo"} <= set(PREFERENCE_LOSSES)
    assert "sft" not in PREFERENCE_LOSSES


@pytest.mark.parametrize("loss", PREFERENCE_LOSSES)
def test_zero_negatives_is_refused_for_objectives_that_need_them(loss, tmp_path, cache_dir):
    """With K = 0 every pairwise / softmax loss is exactly 0: the run would 'succeed' having trained
    nothing."""
    cfg = compose_cfg([*TINY, f"loss={loss}", "loss.num_negatives=0"], tmp_path, cache_dir)
    with pytest.raises(ConfigError, match=r"loss\.num_negatives=0: .*needs K >= 1"):
        validate(cfg)


def test_sft_needs_no_negatives(tmp_path, cache_dir):
    cfg = compose_cfg([*TINY, "loss=sft"], tmp_path, cache_dir)
    assert cfg.loss.num_negatives == 0
    validate(cfg)


@pytest.mark.parametrize("loss", ["napo", "napo_official"])
@pytest.mark.parametrize("override", ["loss.objective.gamma0=-1", "loss.objective.alpha=-0.3"])
def test_napo_margin_options_outside_their_range_are_refused(loss, override, tmp_path, cache_dir):
    cfg = compose_cfg([*TINY, f"loss={loss}", override], tmp_path, cache_dir)
    key = override.split("=")[0].split(".")[-1]
    with pytest.raises(ConfigError, match=rf"{key} must be in \[0, inf\)"):
        validate(cfg)


def test_napo_gamma0_zero_is_valid(tmp_path, cache_dir):
    validate(compose_cfg([*TINY, "loss=napo", "loss.objective.gamma0=0"], tmp_path, cache_dir))


def test_optimized_metric_is_a_validation_metric_everywhere(tmp_path, cache_dir):
    """The default, each sweep preset and the README name the same validation metric, so a sweep that
    optimises without overriding it never selects on the test split."""
    default = compose_cfg([*TINY], tmp_path, cache_dir).optimized_metric
    assert default.startswith("val/"), default
    for preset in sorted((CONF_DIR / "hparams_search").glob("*.yaml")):
        cfg = compose_cfg([*TINY, f"hparams_search={preset.stem}"], tmp_path, cache_dir)
        assert cfg.optimized_metric == default, preset.stem
        assert "val" in cfg.eval.splits, preset.stem  # the metric exists in what the run returns
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"optimized_metric[^\n]*?`((?:val|test)/[\w@]+)`", readme))
    assert named == {default}, named


def test_rosepo_preset_describes_hallucinated_negatives_as_the_sampler_draws_them():
    """The sampler's hallucinated negatives are catalogue items outside the prompt's candidates: they
    have item ids, so RosePO's oracle scores them; the yaml must not say they have no id."""
    sampler = NegativeSampler("hallucinated", 3, n_items=30, train_counts=np.ones(30), seed=0)
    candidates = list(range(20))
    for example in range(20):
        drawn = sampler.sample(example, 0, history=[25], target=3, candidates=candidates)
        assert len(drawn) == 3 and all(0 <= i < 30 and i not in candidates and i != 25 for i in drawn)
    text = (CONF_DIR / "loss" / "rosepo.yaml").read_text()
    line = next(x for x in text.splitlines() if x.strip().startswith("hallucinated:"))
    assert "no item id" not in line and "item id" in line
