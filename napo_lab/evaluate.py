"""`python -m napo_lab.evaluate [adapter=<dir>] [overrides]`: evaluate without training.

With no adapter it evaluates the untrained model (LoRA initialised to the identity): the zero-shot
row of the paper tables. With ``adapter=<run dir>/adapter`` it evaluates a saved adapter on the base
model and dataset it was trained with (read from the napo_lab_config.yaml saved beside it), into its
own run directory; ``model=...`` / ``dataset=...`` on the command line choose others, and dotted
overrides (``dataset.test_limit=50``) apply on top of the adapter's settings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from napo_lab import CONF_DIR
from napo_lab.run import execute
from napo_lab.rundir import RUN_INFO

log = logging.getLogger("napo_lab")


def adapter_method(adapter: str | None) -> str:
    """The row name: zero_shot, or the method recorded by the run that trained the adapter."""
    if not adapter:
        return "zero_shot"
    info = Path(adapter).expanduser().parent / RUN_INFO
    try:
        return str(json.loads(info.read_text())["method"])
    except (OSError, ValueError, KeyError):
        return "adapter"


#: Groups an adapter brings with it (the base model it was trained on, the data it knows).
ADAPTER_GROUPS = ("model", "dataset")


def adopt_adapter_config(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """Replace the model and dataset groups by the adapter's own, unless the command line chose the
    group itself; dotted overrides of the group are re-applied on top. Returns the groups adopted."""
    from napo_lab.models.adapters import adapter_run_config

    saved = adapter_run_config(Path(str(cfg.adapter)).expanduser())
    if not saved:
        return []
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    adopted = []
    for group in ADAPTER_GROUPS:
        if group in keys or group not in saved:
            continue
        node = OmegaConf.create(saved[group])
        for key in keys:
            if key.startswith(group + "."):
                OmegaConf.update(node, key[len(group) + 1:], OmegaConf.select(cfg, key), force_add=True)
        cfg[group] = node
        adopted.append(group)
    return adopted


def evaluate_job(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    from napo_lab.recipe import evaluate_only

    return evaluate_only(cfg, out_dir)


@hydra.main(config_path=str(CONF_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with open_dict(cfg):
        cfg.task_name = "evaluate"
        cfg.method_name = adapter_method(cfg.get("adapter"))
        cfg.resume = False
        if cfg.get("adapter"):
            from hydra.core.hydra_config import HydraConfig

            from napo_lab.errors import UserError, report_error

            try:
                adopted = adopt_adapter_config(cfg, list(HydraConfig.get().overrides.task))
            except UserError as err:
                raise SystemExit(report_error(err, debug=bool(cfg.get("debug", False)))) from None
            if adopted:
                log.info("%s from the adapter's %s", " and ".join(adopted), "napo_lab_config.yaml")
    return execute(cfg, job=evaluate_job)


if __name__ == "__main__":
    main()
