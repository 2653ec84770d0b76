"""Validate the whole composed config before any model or data is loaded.

Every problem is collected and reported at once, each naming the key and what it accepts, so a
sweep job fails in a second instead of after a model load.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig


class ConfigError(ValueError):
    """The composed config is invalid; the message lists every problem and its fix."""


def _num(cfg: DictConfig, key: str) -> Any:
    return cfg.get(key) if cfg is not None else None


def validate(cfg: DictConfig) -> Any:
    """Raise ConfigError listing every problem; return the instantiated loss objective (or None)."""
    problems: list[str] = []
    for stage in ("sft", "pref"):
        sc = cfg.get(stage)
        if sc is None:
            continue
        lr = _num(sc, "lr")
        if lr is None or float(lr) <= 0:
            problems.append(f"{stage}.lr={lr}: the learning rate must be > 0")
        bs = _num(sc, "batch_size")
        if bs is None or int(bs) < 1:
            problems.append(f"{stage}.batch_size={bs}: must be an integer >= 1")
        if int(_num(sc, "epochs") or 0) < 1 and int(_num(sc, "max_steps") or -1) < 1:
            problems.append(f"{stage}.epochs={_num(sc, 'epochs')}: train for at least 1 epoch (or set max_steps)")
        limit = _num(sc, "train_limit")
        if limit is not None and int(limit) < 1:
            problems.append(f"{stage}.train_limit={limit}: use null (all rows) or a positive count")
    ds = cfg.dataset
    n_cands = int(ds.get("n_candidates", 20))
    if n_cands < 2:
        problems.append(f"dataset.n_candidates={n_cands}: needs at least 2 (the target and one other)")
    objective = None
    if cfg.model.get("kind", "llm") == "llm":
        loss = cfg.loss
        k = int(loss.get("num_negatives", 0) or 0)
        strategy = (loss.get("negatives") or {}).get("strategy", "in_prompt")
        if k < 0:
            problems.append(f"loss.num_negatives={k}: must be >= 0")
        if strategy == "in_prompt" and k >= n_cands:
            problems.append(f"loss.num_negatives={k}: in-prompt negatives come from the other "
                            f"{n_cands - 1} candidates, so K must be < dataset.n_candidates={n_cands}")
        if loss.get("stage") not in ("sft", "preference"):
            problems.append(f"loss.stage={loss.get('stage')!r}: use sft or preference")
        try:
            objective = instantiate(loss.objective)
        except Exception as err:  # the loss constructor validates its own options
            cause = err.__cause__ or err
            problems.append(f"loss ({loss.get('name')}): {cause}")
    if cfg.get("forward") not in ("shared_prefix", "duplicate"):
        problems.append(f"forward={cfg.get('forward')!r}: use shared_prefix or duplicate")
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))
    return objective
