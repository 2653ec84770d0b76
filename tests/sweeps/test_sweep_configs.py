"""Sweep, launcher, search and strategy presets compose with the real config tree (no plugin needed
for the launchers that are not installed), and the global batch stays constant across device counts."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from napo_lab import CONF_DIR
from napo_lab.recipe.build import accumulation
from napo_lab.recipe.build import strategy as build_strategy


def _compose(overrides: list[str]):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["paths.output_dir=/tmp/x", *overrides], return_hydra_config=True)


@pytest.mark.parametrize("preset, target", [
    ("parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ("ray_cluster", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"),
])
def test_launcher_presets_compose(preset, target):
    cfg = _compose([f"hydra/launcher={preset}", "trainer=gpu", "trainer.devices=4"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"] == target
    if preset == "slurm":  # one Slurm task per device: Lightning's SLURMEnvironment takes the ranks from Slurm
        assert cfg.hydra.launcher.tasks_per_node == 4 and cfg.hydra.launcher.gpus_per_node == 4
        assert cfg.hydra.launcher.nodes == 1
    if preset == "ray_cluster":
        assert cfg.hydra.launcher.ray.remote.num_gpus == 4


def test_plugin_joblib_launcher_still_selectable():
    cfg = _compose(["hydra/launcher=joblib"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


@pytest.mark.parametrize("preset, loss, params", [
    ("napo_optuna", "napo", {"loss.objective.beta", "loss.objective.gamma0", "loss.objective.alpha",
                             "loss.objective.rho"}),
    ("sdpo_optuna", "sdpo", {"loss.objective.beta", "loss.num_negatives"}),
])
def test_hparams_search_presets_compose(preset, loss, params):
    cfg = _compose([f"hparams_search={preset}"])
    assert cfg.loss.name == loss
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == params
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert "val" in cfg.eval.splits and cfg.optimized_metric == "val/hr@1"
    # every searched key exists in the composed config (a typo would only surface at the first trial)
    for key in params:
        assert OmegaConf.select(cfg, key) is not None, key


def test_sweep_objectives_experiment():
    cfg = _compose(["experiment=sweep_objectives"])
    params = cfg.hydra.sweeper.params
    assert params.loss == "dpo,sdpo,napo" and params.dataset == "lastfm,movielens,goodreads"
    assert params.seed == "0,1,2" and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert "experiment" in cfg.hydra.job.config.override_dirname.exclude_keys  # dirs: dataset=..,loss=..,seed=..


def test_strategy_presets_compose_and_build():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    ddp = _compose(["strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    assert isinstance(build_strategy(ddp), DDPStrategy)
    fsdp = _compose(["strategy=fsdp", "trainer=gpu", "trainer.devices=2"])
    assert fsdp.strategy.use_orig_params is True  # LoRA: frozen and trainable weights in one flat parameter
    assert isinstance(build_strategy(fsdp), FSDPStrategy)
    ds = _compose(["strategy=deepspeed_stage_2", "trainer=gpu", "trainer.devices=2"])
    assert build_strategy(ds) == "deepspeed_stage_2"


@pytest.mark.parametrize("micro, world, expected", [(4, 1, 8), (4, 2, 4), (2, 4, 4), (4, 8, 1)])
def test_global_batch_constant_across_devices(micro, world, expected):
    stage = {"batch_size": micro, "global_batch_size": 32}
    acc = accumulation(stage, world)
    assert acc == expected and micro * world * acc == 32


def test_global_batch_not_divisible_is_an_error():
    with pytest.raises(ValueError, match="global_batch_size"):
        accumulation({"batch_size": 3, "global_batch_size": 32}, 2)


def test_multi_device_job_in_local_multirun_fails_fast(monkeypatch):
    """Lightning would start the other DDP ranks by re-running the sweep's command line."""
    from napo_lab import run

    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    cfg = _compose(["strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2"])
    monkeypatch.setattr(run, "_hydra_info", lambda: ([], True))
    with pytest.raises(ValueError, match="local multirun"):
        run.check_ddp_launch(cfg)
    run.check_ddp_launch(_compose(["trainer.devices=1"]))  # one device per job: fine
    monkeypatch.setattr(run, "_hydra_info", lambda: ([], False))
    run.check_ddp_launch(cfg)  # a single DDP run: Lightning launches the ranks itself
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "napo")
    monkeypatch.setattr(run, "_hydra_info", lambda: ([], True))
    run.check_ddp_launch(cfg)  # Slurm started the ranks (hydra/launcher=slurm)
