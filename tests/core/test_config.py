"""Every option of every config group composes with the real Hydra tree, and means what it says."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from napo_lab import CONF_DIR
from napo_lab.recipe.validate import validate

GROUPS = ["dataset", "model", "loss", "strategy", "trainer", "logger", "callbacks", "eval", "paths"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def _hydra():
    """One Hydra initialisation for the whole module (composing is then ~20x faster)."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        yield


def _compose(*overrides: str):
    return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(group, option):
    cfg = _compose(f"{group}={option}", "paths.output_dir=/tmp/x")
    assert cfg[group] is not None
    if group == "model":
        assert cfg.model.kind in ("llm", "seqrec") and cfg.model.name
        if cfg.model.kind == "llm":
            assert set(cfg.model.lora) >= {"_target_", "r", "lora_alpha", "lora_dropout", "target_modules"}
    if group == "dataset":
        assert cfg.dataset.n_candidates == 20 and cfg.dataset.max_history == 10
    if group == "loss":
        assert cfg.loss.stage in ("sft", "pref")
        assert hasattr(instantiate(cfg.loss.objective), "needs_reference")


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_composes(experiment):
    cfg = _compose(f"experiment={experiment}", "paths.output_dir=/tmp/x")
    if experiment.startswith("paper_") and cfg.model.kind == "llm":
        assert cfg.sft.epochs == 5 and cfg.pref.epochs == 3 and cfg.sft.lr == cfg.pref.lr == 1e-5
        assert cfg.sft.global_batch_size == cfg.pref.global_batch_size == 128
        assert (cfg.model.lora.r, cfg.model.lora.lora_alpha) == (8, 32) and cfg.loss.objective.beta == 1.0
        assert cfg.loss.num_negatives == 3 and cfg.trainer.gradient_clip_val == 0.3


def test_default_main_job_is_the_cpu_recipe_of_docs_learning():
    """The default job is the one docs/learning.md measures: synthetic chains, SFT with the history
    loss (2 epochs, lr 1e-3), then NAPO, both protocols, with its references."""
    cfg = _compose("paths.output_dir=/tmp/x")
    assert cfg.model.name == "smollm2_135m" and cfg.model.loader._target_.endswith("load_gguf_package")
    assert cfg.dataset.name == "synthetic" and cfg.loss.name == "napo"
    assert (cfg.sft.epochs, cfg.sft.lr, cfg.sft.history_weight) == (2, 1e-3, 1.0)
    assert cfg.eval.protocol == "both" and cfg.eval.references
    assert cfg.trainer.precision == "auto" and cfg.model.loader.dtype == "auto"
    assert cfg.sft.train_limit <= 1000 and cfg.pref.train_limit <= 512
    validate(cfg)


def test_lora_defaults_are_s_dpo_rank_and_targets_without_dropout():
    lora = _compose("paths.output_dir=/tmp/x").model.lora
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (8, 32, 0.0)
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize("preset, hub_id", [
    ("llama2_7b", "meta-llama/Llama-2-7b-hf"), ("llama3_8b_instruct", "meta-llama/Meta-Llama-3-8B-Instruct"),
    ("qwen2_5_0_5b_instruct", "Qwen/Qwen2.5-0.5B-Instruct"), ("qwen2_5_1_5b_instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
    ("qwen2_5_7b_instruct", "Qwen/Qwen2.5-7B-Instruct")])
def test_model_presets(preset, hub_id):
    m = _compose(f"model={preset}", "paths.output_dir=/tmp/x").model
    assert m.loader.name_or_path == hub_id and m.loader.dtype == "bf16"
    assert m.loader._target_ == "napo_lab.models.llm.load_pretrained"
    assert m.chat_template is (preset != "llama2_7b")


def test_data_dir_defaults_to_the_environment(monkeypatch):
    monkeypatch.setenv("NAPO_LAB_DATA_DIR", "/some/where")
    assert _compose("paths.output_dir=/tmp/x").paths.data_dir == "/some/where"
