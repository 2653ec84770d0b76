"""`python -m napo_lab.evaluate [adapter=<dir>] [overrides]`: evaluate without training.

With no adapter it evaluates the untrained model (LoRA initialised to the identity): the zero-shot
row of the paper tables. With ``adapter=<run dir>/adapter`` it evaluates a saved adapter under the
same config groups (dataset, model, eval, ...) as ``napo_lab.run``, into its own run directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

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


def evaluate_job(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    from napo_lab.recipe import evaluate_only

    return evaluate_only(cfg, out_dir)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with open_dict(cfg):
        cfg.task_name = "evaluate"
        cfg.method_name = adapter_method(cfg.get("adapter"))
        cfg.resume = False
    return execute(cfg, job=evaluate_job)


if __name__ == "__main__":
    main()
