"""Validate the whole composed config before any data or model loads.

Every problem is collected and reported at once, each with its key and what it accepts, so a bad
sweep job fails in a second instead of after a model load (or, worse, after training).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from napo_lab.config import schema
from napo_lab.config.check import Checker
from napo_lab.errors import ConfigError

GROUPS = ("paths", "dataset", "model", "seqrec", "loss", "trainer", "strategy", "logger", "callbacks", "eval",
          "sampler", "neg_sampler")


def plain(cfg: Any) -> Any:
    """The config as plain containers, interpolations resolved (``???`` kept as the string)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return cfg


def _resolved(cfg: DictConfig, check: Checker) -> dict[str, Any]:
    """Resolve group by group, so one broken interpolation is one problem, not a crash."""
    out: dict[str, Any] = {}
    for key in cfg:
        try:
            value = cfg[key]
            out[key] = OmegaConf.to_container(value, resolve=True, throw_on_missing=False) \
                if isinstance(value, (DictConfig, ListConfig)) else value
        except MissingMandatoryValue:
            out[key] = "???"
        except Exception as err:  # noqa: BLE001 - an interpolation error names the key in its message
            check.problems.append(f"{key}: cannot be resolved ({str(err).splitlines()[0]})")
    return out


def world_size(trainer: Mapping[str, Any]) -> int:
    devices = trainer.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        n = len(devices)
    else:
        n = int(devices) if str(devices).lstrip("-").isdigit() else 1
    return max(1, n) * max(1, int(trainer.get("num_nodes", 1) or 1))


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of ``cfg`` (nothing is loaded or built)."""
    check = Checker()
    c = _resolved(cfg, check)
    root = {k: v for k, v in c.items() if k not in GROUPS and k not in ("experiment", "hparams_search")}
    check.node("config", root, schema.Root)
    check.problems = [p.replace("config.", "", 1) if p.startswith("config.") else p for p in check.problems]
    check.value("paths", c.get("paths"), schema.Paths)
    check.value("eval", c.get("eval"), schema.Eval)
    _dataset(check, c.get("dataset"))
    model = c.get("model") or {}
    if model.get("kind") == "seqrec":
        _seqrec(check, "model", model)
    elif model.get("kind") == "cf":
        _cf(check, model, c.get("sampler"), c.get("dataset"))
    else:
        _llm(check, model)
        _loss(check, c.get("loss"), c.get("dataset") or {})
    if c.get("seqrec") is not None:
        _seqrec(check, "seqrec", c["seqrec"])
    if c.get("neg_sampler") is not None:
        _neg_sampler(check, c["neg_sampler"], model, c.get("loss") or {})
    _trainer(check, c.get("trainer") or {}, c)
    _strategy(check, c.get("strategy") or {}, c.get("trainer") or {})
    for group in ("logger", "callbacks"):
        entries = c.get(group) or {}
        if not isinstance(entries, Mapping):
            check.bad(group, entries, f"expected a mapping of named {group} entries, each with a _target_")
            continue
        for name, node in entries.items():
            check.target(f"{group}.{name}", node)
    if check.problems:
        raise ConfigError("Invalid configuration:\n  - " + "\n  - ".join(check.problems))


def _dataset(check: Checker, ds: Any) -> None:
    typed = check.value("dataset", ds, schema.Dataset)
    if not isinstance(ds, Mapping):
        return
    if typed and ds["min_history"] > ds["max_history"]:
        check.bad("dataset.min_history", ds["min_history"], f"must be <= dataset.max_history={ds['max_history']}")
    pop = ds.get("popularity")
    if typed and pop["head_ratio"] + pop["tail_ratio"] > 1:
        check.bad("dataset.popularity", pop, "head_ratio + tail_ratio must be <= 1")
    builder = check.target("dataset.builder", ds.get("builder"))
    # a builder's module may say which evaluation splits it prepares (napo_lab.data.sources.*.eval_splits)
    splits = getattr(sys.modules.get(getattr(builder, "__module__", ""), None), "eval_splits", None)
    if callable(splits):
        allowed = splits(ds)
        for role in ("val", "test"):
            if isinstance(ds.get(f"{role}_split"), str) and ds[f"{role}_split"] not in allowed:
                check.bad(f"dataset.{role}_split", ds[f"{role}_split"], f"use one of {' | '.join(allowed)}")


def _llm(check: Checker, model: Any) -> None:
    if not check.value("model", model, schema.LLM):
        return
    if check.target("model.loader", model["loader"], ignore=("cache_dir",)) is not None:
        from napo_lab.models.llm import DTYPES

        dtype = model["loader"].get("dtype", "auto")
        if dtype != "auto" and dtype not in DTYPES:
            check.bad("model.loader.dtype", dtype, f"use auto or one of {' | '.join(DTYPES)}")
    check.target("model.lora", model["lora"])


def _seqrec(check: Checker, key: str, node: Any) -> None:
    from napo_lab.models.preferdiff.config import PreferDiffConfig
    from napo_lab.models.seqrec.config import SeqRecConfig

    if not isinstance(node, Mapping):
        hint = (f"choose the sequential model NAPO/RosePO consult with model@seqrec={node} (seqrec is filled "
                "from the model group)" if key == "seqrec" and node in ("sasrec", "gru4rec", "caser", "preferdiff")
                else f"expected a sequential-model config ({'model@seqrec' if key == 'seqrec' else 'model'}"
                     "=sasrec|gru4rec|caser|preferdiff)")
        check.bad(key, node, hint)
        return
    typed = PreferDiffConfig if node.get("arch") == "preferdiff" else SeqRecConfig
    if check.value(key, {k: v for k, v in node.items() if k != "_target_"}, typed) and typed is PreferDiffConfig:
        try:  # the cross-field rules (even size, heads dividing it)
            PreferDiffConfig.from_cfg(node)
        except ValueError as err:
            check.problems.append(f"{key}: {err}")


def _cf(check: Checker, model: Any, sampler: Any, ds: Any) -> None:
    """The non-sequential family: model, sampler, and a dataset with explicit ratings."""
    from napo_lab.models.cf.train import CFConfig, SamplerConfig

    if check.value("model", {k: v for k, v in (model or {}).items() if k != "_target_"}, CFConfig):
        try:
            CFConfig(**{k: v for k, v in model.items() if k != "_target_"})
        except ValueError as err:
            check.problems.append(f"model: {err}")
    if sampler is None:
        check.problems.append("sampler is missing: choose sampler=uniform|triplet_shapley|triplet_shapley_weight")
    elif check.value("sampler", {k: v for k, v in sampler.items() if k != "_target_"}, SamplerConfig):
        try:
            SamplerConfig(**{k: v for k, v in sampler.items() if k != "_target_"})
        except (ValueError, TypeError) as err:
            check.problems.append(f"sampler: {err}")
    if isinstance(ds, Mapping) and not (ds.get("files") or {}).get("ratings"):
        check.bad("dataset", ds.get("name"), "the bprmf / lightgcn models need explicit ratings "
                                             "(dataset.files.ratings); use dataset=movielens")


def _loss(check: Checker, loss: Any, ds: Mapping[str, Any]) -> None:
    typed = check.value("loss", loss, schema.Loss)
    if not isinstance(loss, Mapping):
        return
    k, n_cands = loss.get("num_negatives"), ds.get("n_candidates", 20)
    neg = loss.get("negatives") if isinstance(loss.get("negatives"), Mapping) else {}
    if typed and neg["strategy"] == "in_prompt" and isinstance(n_cands, int) and k >= n_cands:
        check.bad("loss.num_negatives", k, f"in-prompt negatives come from the other {n_cands - 1} candidates, so "
                                           f"K must be < dataset.n_candidates={n_cands}")
    if neg.get("strategy") == "mixed":
        allowed = [s for s in schema.STRATEGY.__args__ if s != "mixed"] + ["random"]
        weights = neg.get("weights") or {}
        unknown = sorted(set(weights) - set(allowed))
        if unknown or not any(weights.values()):
            check.bad("loss.negatives.weights", weights, f"map some of {', '.join(allowed)} to weights >= 0, "
                                                         "at least one > 0")
    before = len(check.problems)
    cls = check.target("loss.objective", loss.get("objective"))
    if cls is None or len(check.problems) > before:
        return
    from napo_lab.losses.base import config_problems

    try:
        objective = instantiate(loss["objective"])
    except Exception as err:  # noqa: BLE001 - the loss constructor validates its own options
        cause = err.__cause__ or err
        check.problems.append(f"loss.objective ({loss.get('name')}): {cause}")
        if typed and isinstance(cls, type):  # what the class needs from the data side, reported beside it
            check.problems.extend(config_problems(cls, int(k)))
        return
    if typed:  # and the loss itself says what it needs from the data side (K >= 1, ...)
        check.problems.extend(config_problems(objective, int(k)))
    needs = [f"loss.objective ({loss.get('name')})"] if getattr(objective, "needs_pref_scores", False) else []
    if typed and str(neg.get("strategy")).startswith("recpo_"):
        needs.append(f"loss.negatives.strategy={neg['strategy']}")
    if needs and not _preference_scores(ds):
        check.problems.append(f"{' and '.join(needs)} read RecPO's candidate scores, which dataset="
                              f"{ds.get('name')} does not prepare; use dataset=movielens_recpo or lastfm_recpo")


def _preference_scores(ds: Mapping[str, Any]) -> bool:
    """Whether the dataset's builder writes RecPO's candidate scores (its module sets PREFERENCE_SCORES)."""
    builder = ds.get("builder") if isinstance(ds, Mapping) else None
    target = str(builder.get("_target_", "")) if isinstance(builder, Mapping) else ""
    module = sys.modules.get(target.rsplit(".", 1)[0])
    return bool(getattr(module, "PREFERENCE_SCORES", False))


def _trainer(check: Checker, trainer: Mapping[str, Any], c: Mapping[str, Any]) -> None:
    if not isinstance(trainer, Mapping):
        check.bad("trainer", trainer, "expected the Lightning Trainer's arguments with _target_")
        return
    for key, where in schema.TRAINER_OWNED.items():
        if key in trainer:
            check.bad(f"trainer.{key}", trainer[key], f"set by napo_lab; {where}")
    check.target("trainer", {k: v for k, v in trainer.items() if k not in schema.TRAINER_OWNED})
    for key, tp, rules in (("precision", schema.PRECISION, {}), ("accelerator", schema.ACCELERATOR, {}),
                           ("num_nodes", int, {"ge": 1}), ("max_epochs", int | None, {"ge": -1}),
                           ("max_steps", int, {"ge": -1}), ("gradient_clip_val", float | None, {"ge": 0}),
                           ("log_every_n_steps", int, {"ge": 1}), ("deterministic", bool | str, {})):
        if key in trainer:
            check.value(f"trainer.{key}", trainer[key], tp, rules)
    world = world_size(trainer)
    for stage in ("sft", "pref"):
        sc = c.get(stage) if isinstance(c.get(stage), Mapping) else {}
        glob, micro = sc.get("global_batch_size"), sc.get("batch_size")
        if isinstance(glob, int) and isinstance(micro, int) and micro > 0 and glob % (micro * world):
            check.bad(f"{stage}.global_batch_size", glob, f"must be a multiple of batch_size x devices = "
                                                          f"{micro} x {world}; change one of them")
        if sc.get("epochs") is None and trainer.get("max_epochs") in (None, -1) and sc.get("max_steps") in (None, -1) \
                and trainer.get("max_steps", -1) == -1:
            check.bad(f"{stage}.epochs", None, "set it or trainer.max_epochs (or a max_steps): the stage would "
                                               "never end")


def _strategy(check: Checker, strategy: Mapping[str, Any], trainer: Mapping[str, Any]) -> None:
    if not isinstance(strategy, Mapping) or not isinstance(strategy.get("name"), str):
        check.bad("strategy", strategy, "expected a strategy config with a name (strategy=auto|ddp|fsdp|...)")
        return
    if "_target_" in strategy:
        check.target("strategy", strategy, ignore=("name",))
    name = strategy["name"]
    accelerator = str(trainer.get("accelerator", "auto"))
    if ("fsdp" in name or "deepspeed" in name) and (accelerator == "cpu" or (accelerator == "auto" and not _cuda())):
        check.bad("strategy", name, "needs GPUs (trainer=gpu); on CPU use strategy=auto or strategy=ddp")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _neg_sampler(check: Checker, sampler: Any, model: Mapping[str, Any], loss: Mapping[str, Any]) -> None:
    """The neg_sampler group: its schema, the sampler's own rules, and in an LLM preference run
    loss.num_negatives = the negatives the sampler keeps per prompt."""
    if not check.value("neg_sampler", sampler, schema.NegSampler):
        return
    from napo_lab.data.negatives import NegativeSpec

    try:
        spec = NegativeSpec(**{k: v for k, v in sampler.items() if k not in ("name", "loss")})
    except (TypeError, ValueError) as err:
        check.problems.extend(str(err).split("; "))
        return
    if model.get("kind") != "seqrec" and loss.get("stage") == "pref" and loss.get("num_negatives") != spec.kept:
        what = "top_k" if spec.adaptive else "num_samples + num_uniform"
        check.bad("loss.num_negatives", loss.get("num_negatives"),
                  f"neg_sampler={sampler['name']} gives {spec.kept} negatives per prompt ({what}); make them equal")
