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


def _num(cfg: DictConfig, key: str, problems: list[str], where: str, kind=float) -> Any:
    """The value as a number, or None with a problem recorded when it is not one."""
    value = cfg.get(key) if cfg is not None else None
    if value is None or isinstance(value, bool):
        return None if value is None else _bad(problems, f"{where}.{key}={value!r}: expected a number")
    try:
        number = float(value)
        if kind is int and number != int(number):
            raise ValueError
        return kind(number)
    except (TypeError, ValueError, OverflowError):
        return _bad(problems, f"{where}.{key}={value!r}: expected {'an integer' if kind is int else 'a number'}")


def _bad(problems: list[str], message: str) -> None:
    problems.append(message)
    return None


def validate(cfg: DictConfig) -> Any:
    """Raise ConfigError listing every problem; return the instantiated loss objective (or None)."""
    problems: list[str] = []
    for stage in ("sft", "pref"):
        sc = cfg.get(stage)
        if sc is None:
            continue
        n = len(problems)
        lr = _num(sc, "lr", problems, stage)
        if len(problems) == n and (lr is None or lr <= 0):
            problems.append(f"{stage}.lr={sc.get('lr')}: the learning rate must be > 0")
        n = len(problems)
        bs = _num(sc, "batch_size", problems, stage, int)
        if len(problems) == n and (bs is None or bs < 1):
            problems.append(f"{stage}.batch_size={sc.get('batch_size')}: must be an integer >= 1")
        epochs = _num(sc, "epochs", problems, stage, int) or 0
        steps = _num(sc, "max_steps", problems, stage, int) or -1
        if epochs < 1 and steps < 1:
            problems.append(f"{stage}.epochs={sc.get('epochs')}: train for at least 1 epoch (or set max_steps)")
        limit = _num(sc, "train_limit", problems, stage, int)
        if limit is not None and limit < 1:
            problems.append(f"{stage}.train_limit={limit}: use null (all rows) or a positive count")
    ds = cfg.dataset
    n_cands = _num(ds, "n_candidates", problems, "dataset", int)
    n_cands = 20 if n_cands is None else n_cands
    if n_cands < 2:
        problems.append(f"dataset.n_candidates={n_cands}: needs at least 2 (the target and one other)")
    objective = None
    if cfg.model.get("kind", "llm") == "llm":
        loss = cfg.loss
        k = _num(loss, "num_negatives", problems, "loss", int)
        k = 0 if k is None else k
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
            problems.append(f"loss.objective ({loss.get('name')}): {cause}")
        else:  # and the loss itself says what it needs from the data side (K >= 1, ...)
            from napo_lab.losses.base import config_problems

            problems += config_problems(objective, k)
    sampler = cfg.get("neg_sampler")
    if sampler:
        problems += _neg_sampler_problems(cfg, sampler)
    if cfg.get("forward") not in ("shared_prefix", "duplicate"):
        problems.append(f"forward={cfg.get('forward')!r}: use shared_prefix or duplicate")
    if problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(problems))
    return objective


def _neg_sampler_problems(cfg: DictConfig, sampler: DictConfig) -> list[str]:
    """The neg_sampler group: valid keys, a sampled loss for a sequential model, and for an LLM
    preference run K = the negatives the sampler keeps."""
    from omegaconf import OmegaConf

    from napo_lab.data.negatives import NegativeSpec

    ns = {k: v for k, v in OmegaConf.to_container(sampler, resolve=True).items() if k not in ("name", "loss")}
    try:
        spec = NegativeSpec.from_cfg(ns)
    except (TypeError, ValueError) as err:
        return [str(err)]
    out = []
    if cfg.model.get("kind", "llm") == "seqrec":
        if sampler.get("loss", "bce") not in ("bce", "bpr", "sampled_softmax"):
            out.append(f"neg_sampler.loss={sampler.get('loss')!r}: choose bce, bpr or sampled_softmax")
    elif cfg.loss.get("stage") == "preference":
        k = cfg.loss.get("num_negatives")
        if k != spec.kept:
            what = "top_k" if spec.adaptive else "num_samples + num_uniform"
            out.append(f"loss.num_negatives={k} but neg_sampler={sampler.get('name')} gives {spec.kept} negatives "
                       f"per prompt ({what}); make them equal")
    return out
