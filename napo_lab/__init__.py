"""napo_lab: preference optimisation for LLM-based sequential recommenders (Hydra + Lightning)."""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

#: The Hydra config tree shipped with the repository (napo_lab/../conf).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _job_dirname(override_dirname) -> str:
    from napo_lab.rundir import job_dirname

    return job_dirname(str(override_dirname or ""))


# conf/hydra/default.yaml names sweep job directories with ${napo_job_dir:${hydra.job.override_dirname}}.
if not OmegaConf.has_resolver("napo_job_dir"):
    OmegaConf.register_new_resolver("napo_job_dir", _job_dirname)


def _group_options(group) -> str:
    """``${napo_group_options:dataset}``: the options of a config group (for help texts)."""
    return ", ".join(sorted(p.stem for p in (CONF_DIR / str(group)).glob("*.yaml")))


if not OmegaConf.has_resolver("napo_group_options"):
    OmegaConf.register_new_resolver("napo_group_options", _group_options)
