"""The recipe builds every group from its config, passes every Trainer argument through, and treats
LLMs and sequential models alike in evaluation; a report over real runs draws training curves."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest
from hydra.utils import instantiate
from matplotlib.image import imread

from napo_lab import CONF_DIR
from napo_lab.recipe import build
from napo_lab.recipe.keys import stage_settings
from napo_lab.recipe.validate import validate
from napo_lab.report import write_report
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


OPTIONAL = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}


@pytest.mark.parametrize("option", _options("logger"))
def test_every_logger_instantiates(tmp_path, cache_dir, option):
    needs = OPTIONAL.get(option, ())
    if needs and not any(importlib.util.find_spec(m) for m in needs):
        pytest.skip(f"logger={option} needs `pip install {needs[0]}`")
    cfg = compose_cfg([*TINY, f"logger={option}"], tmp_path, cache_dir)
    validate(cfg)
    loggers = build.loggers(cfg)
    assert len(loggers) == len(cfg.logger)
    for logger in loggers:
        logger.log_metrics({"test/hr@1": 0.5})
        logger.save()
    from napo_lab.lit.loggers import finish_wandb

    finish_wandb()


@pytest.mark.parametrize("option", _options("callbacks"))
def test_every_callbacks_option_instantiates(tmp_path, cache_dir, option):
    import lightning as L

    cfg = compose_cfg([*TINY, f"callbacks={option}"], tmp_path, cache_dir)
    assert all(isinstance(c, L.Callback) for c in build.callbacks(cfg))


@pytest.mark.parametrize("option", _options("strategy"))
def test_every_strategy_builds(tmp_path, cache_dir, option):
    cfg = compose_cfg([*TINY, f"strategy={option}", "trainer=gpu", "trainer.devices=2"], tmp_path, cache_dir)
    built = build.strategy(cfg)
    assert built == option if isinstance(built, str) else type(built).__name__.lower().startswith(option[:3])


@pytest.mark.parametrize("option", _options("trainer"))
def test_every_trainer_builds(tmp_path, cache_dir, option):
    import lightning as L

    if option == "gpu":
        pytest.skip("no GPU here: trainer=gpu builds only where CUDA is")
    cfg = compose_cfg([*TINY, f"trainer={option}"], tmp_path, cache_dir)
    assert isinstance(build.trainer(cfg, stage_settings(cfg, "sft"), [], False, False, tmp_path), L.Trainer)


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_option_builds_its_parts(tmp_path, cache_dir, option):
    """LoRA (peft.LoraConfig) and the loader signature for LLMs, the typed config for sequential
    models; the tiny model is built for real (the others need downloads or minutes)."""
    from peft import LoraConfig

    from napo_lab.models.cf import CFConfig, SamplerConfig
    from napo_lab.models.preferdiff import PreferDiffConfig
    from napo_lab.models.seqrec import SeqRecConfig

    extra = {"hf": ["model.loader.name_or_path=x/y"], "bprmf": ["dataset=movielens"],
             "lightgcn": ["dataset=movielens"]}.get(option, [])
    cfg = compose_cfg([*TINY, f"model={option}", *extra], tmp_path, cache_dir)
    validate(cfg)
    if cfg.model.kind == "seqrec":
        assert isinstance(instantiate(cfg.model), PreferDiffConfig if option == "preferdiff" else SeqRecConfig)
        return
    if cfg.model.kind == "cf":
        assert isinstance(instantiate(cfg.model), CFConfig) and isinstance(instantiate(cfg.sampler), SamplerConfig)
        return
    assert isinstance(build.make(cfg.model.lora, _convert_="all"), LoraConfig)
    if option == "tiny_random":
        model, tok = build.model(cfg)
        assert any(p.requires_grad for p in model.parameters()) and tok.pad_token_id is not None


@pytest.mark.parametrize("option", _options("dataset"))
def test_every_dataset_builder_and_loss_instantiates(tmp_path, cache_dir, option):
    cfg = compose_cfg([*TINY, f"dataset={option}"], tmp_path, cache_dir)
    assert callable(build.make(cfg.dataset.builder))
    for loss in _options("loss"):
        assert hasattr(build.loss(compose_cfg([*TINY, f"loss={loss}"], tmp_path, cache_dir)), "needs_reference")


def test_trainer_arguments_pass_through_and_stages_override_them(tmp_path, cache_dir):
    cfg = compose_cfg([*TINY, "trainer.max_epochs=3", "sft.epochs=2", "+trainer.limit_train_batches=2",
                       "+trainer.val_check_interval=1.0", "trainer.gradient_clip_val=0.5",
                       "+trainer.gradient_clip_algorithm=value"], tmp_path, cache_dir)
    validate(cfg)
    sft = build.trainer(cfg, stage_settings(cfg, "sft"), [], False, False, tmp_path)
    pref = build.trainer(cfg, stage_settings(cfg, "pref"), [], False, False, tmp_path)
    assert sft.max_epochs == 2 and pref.max_epochs == 3  # the stage's own setting wins; null = trainer's
    assert sft.limit_train_batches == 2 and sft.val_check_interval == 1.0
    assert sft.gradient_clip_val == 0.5 and sft.gradient_clip_algorithm == "value"


def test_trainer_max_epochs_really_trains_that_many_epochs(tmp_path):
    out = tmp_path / "run"
    execute(compose_cfg([*TINY, "loss=dpo", "trainer.max_epochs=2", "sft.epochs=1", "+trainer.limit_train_batches=1"],
                        out, tmp_path / "cache"))
    rows = pd.read_csv(out / "train_metrics.csv")
    assert sorted(rows[rows["stage"] == "sft"]["epoch"]) == [0]
    assert sorted(rows[rows["stage"] == "pref"]["epoch"]) == [0, 1]  # trainer.max_epochs=2, one batch each


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A real tiny sweep: one LLM objective with two seeds, and the sequential model."""
    root = tmp_path_factory.mktemp("sweep")
    cache = tmp_path_factory.mktemp("cache")
    for seed in (0, 1):
        execute(compose_cfg([*TINY, "loss=dpo", f"seed={seed}", "eval.protocol=both"], root / f"dpo_{seed}", cache))
    execute(compose_cfg([*TINY, "model=sasrec", "seqrec.max_epochs=1", "model.max_epochs=2",
                         "model.hidden_size=16", "eval.protocol=both"], root / "sasrec", cache))
    return root


def _families(metrics: dict) -> set[str]:
    skip = ("rank_norm/", "seconds", "seqrec/", "sft/", "train/", "wall_time", "full/")  # full/: scores every item
    return {k for k in metrics if not any(s in k for s in skip) and not k.startswith(("ref/", "vs_zero_shot/"))}


def test_sequential_model_writes_the_same_metrics_and_files_as_an_llm(two_runs):
    llm = json.loads((two_runs / "dpo_0" / "metrics.json").read_text())
    seq = json.loads((two_runs / "sasrec" / "metrics.json").read_text())
    # The same keys, except the two popularity means that are undefined (left out) when no LLM answer
    # named a single candidate, which the untrained tiny model may well do.
    undefined = {"test/pop/avg_pop@1", "test/pop/tail_pct@1"} if llm["test/n_valid"] == 0 else set()
    # Only a sequential model ranks the whole catalogue: its full-catalogue and interaction-volume cohort
    # metrics (napo_lab.metrics.volume) come on top of the shared families.
    undefined |= {k for k in seq if "/full/" in k or k.startswith("volume_cohorts/")}
    assert _families(llm) <= _families(seq) and _families(seq) - _families(llm) <= undefined, \
        _families(seq) ^ _families(llm)
    assert seq["test/valid_ratio"] == 1.0 and seq["test/hr@1"] == seq["test/rank/hr@1"]
    # An LLM run also says what its numbers mean: chance, zero-shot and the sequential model on its rows.
    assert llm["ref/chance/test/rank/hr@1"] == pytest.approx(1 / 20)
    assert 0 <= llm["ref/seqrec/test/rank/hr@1"] <= 1 and 0 <= llm["ref/zero_shot/test/rank/hr@1"] <= 1
    assert llm["vs_zero_shot/test/rank/mrr/low"] <= llm["vs_zero_shot/test/rank/mrr/diff"] \
        <= llm["vs_zero_shot/test/rank/mrr/high"]
    a = pd.read_parquet(two_runs / "dpo_0" / "predictions_test.parquet")
    b = pd.read_parquet(two_runs / "sasrec" / "predictions_test.parquet")
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    assert (a["user"].to_numpy() == b["user"].to_numpy()).all()  # the same rows (eval.splits, limits)
    for name in ("config.yaml", "run_info.json", "metrics.json"):
        assert (two_runs / "sasrec" / name).is_file()


def test_report_over_a_real_sweep_draws_training_curves(two_runs, tmp_path):
    report = write_report(two_runs, out=tmp_path)
    stages = set(pd.read_csv(two_runs / "dpo_0" / "train_metrics.csv")["stage"])
    assert stages == {"sft", "pref"}
    md = report.read_text()
    assert "](training_curves.png)" in md and "training_curves.png skipped" not in md
    img = imread(tmp_path / "training_curves.png")
    assert img.std() > 0.01  # drawn, not blank
