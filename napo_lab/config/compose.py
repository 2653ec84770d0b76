"""Composing the real config tree outside a Hydra app (tests, notebooks, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from napo_lab import CONF_DIR


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """conf/<config_name>.yaml with ``overrides``, as ``python -m napo_lab.run`` would compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name, overrides=list(overrides))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))


def group(name: str, option: str) -> DictConfig:
    """One group option as composed (its defaults list applied), e.g. ``group("loss", "dpo")``."""
    return compose([f"{name}={option}", "paths.output_dir=."])[name]
