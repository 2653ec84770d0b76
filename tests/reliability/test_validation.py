"""Every bad setting is refused before any data or model loads, with its key, and all at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from napo_lab.errors import ConfigError
from napo_lab.recipe.validate import validate
from tests.conftest import TINY, compose_cfg

# (overrides, a needle the message must hold: the key and what it accepts)
BAD = [
    (["eval.protocol=bogus"], "eval.protocol='bogus': use one of generation | ranking | both"),
    (["eval.max_new_tokens=0"], "eval.max_new_tokens=0: must be >= 1"),
    (["eval.splits=[train]"], "eval.splits[0]='train': use one of val | test"),
    (["dataset.test_split=nope"], "dataset.test_split='nope': use one of val | test"),
    (["data.eval_batch_size=0"], "data.eval_batch_size=0: must be >= 1"),
    (["loss.negatives.strategy=bogus"], "loss.negatives.strategy='bogus': use one of in_prompt"),
    (["+logger.bogus=1"], "logger.bogus=1: expected a mapping with a _target_"),
    (["+logger.csv._target_=nowhere.Logger"], "logger.csv._target_='nowhere.Logger' cannot be imported"),
    (["sft.global_batch_size=10"], "sft.global_batch_size=10: must be a multiple of batch_size x devices = 4 x 1"),
    (["pref.weight_decay=-1"], "pref.weight_decay=-1: must be >= 0"),
    (["trainer.precision=17"], "trainer.precision=17: use one of"),
    (["strategy=fsdp", "trainer.accelerator=cpu"], "strategy='fsdp': needs GPUs"),
    (["pref.warmup_ratio=nan"], "pref.warmup_ratio=nan: expected a finite number"),
    (["checkpoint.every_n_steps=often"], "checkpoint.every_n_steps='often': expected an integer"),
    (["sft.lr=nan"], "sft.lr=nan: expected a finite number"),
    (["seed=-1"], "seed=-1: must be >= 0"),
    (["seed=1.5"], "seed=1.5: expected an integer"),
    (["seed=abc"], "seed='abc': expected an integer"),
    (["sft.scheduler=cosin"], "sft.scheduler='cosin': use one of cosine | constant"),
    (["+loss.objective.betta=1", "+loss.objective.gama=2"], "loss.objective: unknown option(s) betta, gama"),
    (["+trainer.max_epoch=3"], "trainer: unknown option(s) max_epoch for lightning.pytorch.Trainer"),
    (["+trainer.logger=false"], "trainer.logger=False: set by napo_lab; choose logger="),
    (["+sft.lrr=1"], "sft: unknown option(s) lrr"),
    (["+model.lora.rank=4"], "model.lora: unknown option(s) rank for peft.LoraConfig"),
    (["model.loader.dtype=fp8"], "model.loader.dtype='fp8': use auto or one of"),
    (["attention_dtype=fp16"], "attention_dtype='fp16': use one of auto | float32 | native"),
    (["forward=sideways"], "forward='sideways': use one of shared_prefix | prefix_cache | duplicate"),
    (["seqrec.arch=bert4rec"], "seqrec.arch='bert4rec': use one of sasrec | gru4rec | caser"),
]


@pytest.mark.parametrize("overrides, needle", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_setting_is_refused_with_its_key(tmp_path, cache_dir, overrides, needle):
    cfg = compose_cfg([*TINY, "loss=sdpo", *overrides], tmp_path, cache_dir)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert needle in str(err.value), str(err.value)


def test_seqrec_given_as_a_group_name_gets_the_right_spelling(tmp_path, cache_dir):
    """`seqrec=gru4rec` sets seqrec to a string (seqrec is filled from the model group): refused before
    anything loads, naming the override that works."""
    cfg = compose_cfg([*TINY, "loss=napo", "seqrec=gru4rec"], tmp_path, cache_dir)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert "seqrec='gru4rec': choose the sequential model NAPO/RosePO consult with model@seqrec=gru4rec" in str(err.value)
    validate(compose_cfg([*TINY, "loss=napo", "model@seqrec=gru4rec"], tmp_path, cache_dir))


def test_every_problem_is_listed_at_once(tmp_path, cache_dir):
    overrides = [o for o, _ in BAD if o[0] != "strategy=fsdp"]
    cfg = compose_cfg([*TINY, "loss=sdpo", *[x for o in overrides for x in o]], tmp_path, cache_dir)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    text = str(err.value)
    for o, needle in BAD:
        if o in overrides and not o[0].startswith("seed="):  # one seed wins the override
            assert needle in text, needle
    assert text.count("\n  - ") >= 20


def test_valid_presets_pass(tmp_path, cache_dir):
    for extra in ([], ["loss=napo"], ["loss=rosepo"], ["model=sasrec"], ["eval=both", "logger=wandb"],
                  ["trainer.max_epochs=3", "sft.epochs=2", "+trainer.limit_train_batches=2"],
                  ["strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]):
        validate(compose_cfg([*TINY, *extra], tmp_path, cache_dir))


def test_refused_before_any_data_or_model_loads(tmp_path):
    """A bad value on a dataset that cannot even be found: the config error comes first, nothing is
    prepared or converted, one paragraph, exit code 2, and the run is recorded as failed."""
    cache = tmp_path / "cache"
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "napo_lab.run", "dataset=lastfm", f"paths.data_dir={tmp_path}/none",
                           f"paths.cache_dir={cache}", "eval.protocol=bogus", "seed=abc", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NAPO_LAB_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr
    assert "eval.protocol='bogus'" in done.stderr and "seed='abc'" in done.stderr
    assert "Traceback" not in done.stderr and "NAPO_LAB_DATA_DIR" not in done.stderr
    assert not (cache / "prepared").exists() and not (cache / "models").exists()
    info = json.loads((run / "run_info.json").read_text())
    assert info["status"] == "failed" and info["seed"] == "abc"
