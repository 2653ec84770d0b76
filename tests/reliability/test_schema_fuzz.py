"""A fuzz over the whole config schema (issue 16): every key of every typed group gets a value of the
wrong type, a value out of its range (where it has one) and a NaN (numbers), and each is refused by
the validator (which runs before any data or model loads) with the key named."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from omegaconf import OmegaConf

from napo_lab.config import schema
from napo_lab.errors import ConfigError
from napo_lab.recipe.validate import validate
from tests.conftest import TINY, compose_cfg

# where each typed group sits in the composed config ("" = the top level)
GROUPS = {"": schema.Root, "eval": schema.Eval, "dataset": schema.Dataset, "loss": schema.Loss,
          "model": schema.LLM, "paths": schema.Paths}
SKIP = {"resume"}  # Any: auto | true | false | a directory


def _members(tp: Any) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [a for a in get_args(tp) if a is not type(None)]
    return [tp]


def _cases(tp: Any, meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """(kind, value) pairs that ``tp`` with rules ``meta`` must refuse."""
    kinds = _members(tp)
    base = kinds[0]
    if dataclasses.is_dataclass(base) or get_origin(base) in (dict, typing.Mapping):
        return [("type", "not a mapping")]
    if get_origin(base) is Literal:
        return [("type", [1, 2]), ("range", "no-such-choice")]
    if get_origin(base) in (list, tuple):
        out = [("type", "not a list")]
        (item,) = get_args(base)
        if get_origin(item) is Literal:
            out.append(("range", ["no-such-choice"]))
        elif meta.get("ge") is not None:
            out.append(("range", [meta["ge"] - 1]))
        return out
    if base is bool:
        return [("type", "maybe")]
    if base is str:
        return [("type", [1, 2])]
    if base in (int, float):
        out = [("type", "abc"), ("nan", math.nan), ("inf", math.inf)]
        if base is int:
            out.append(("fraction", 1.5))
        for rule, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            if meta.get(rule) is not None:
                out.append(("range", meta[rule] + step if rule in ("le", "lt") else meta[rule] + step))
        return out
    raise AssertionError(f"no fuzz cases for {tp}")


def _leaves(prefix: str, cls: type) -> list[tuple[str, Any, dict[str, Any]]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if f.name in SKIP or tp is Any:
            continue
        out.append((key, tp, dict(f.metadata)))
        nested = _members(tp)[0]
        if dataclasses.is_dataclass(nested):
            out += _leaves(key, nested)
    return out


CASES = [(key, kind, value) for prefix, cls in GROUPS.items() for key, tp, meta in _leaves(prefix, cls)
         for kind, value in _cases(tp, meta)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    cfg = compose_cfg([*TINY, "loss=sdpo"], tmp / "run", tmp / "cache")
    return OmegaConf.to_container(cfg, resolve=True)


def test_the_fuzz_covers_every_group_and_kind():
    keys = {key for key, _, _ in CASES}
    assert len(keys) >= 80 and len(CASES) >= 250
    for prefix in GROUPS:
        assert any(k.startswith(prefix) for k in keys)
    assert {"type", "range", "nan"} <= {kind for _, kind, _ in CASES}


@pytest.mark.parametrize("key, kind, value", CASES, ids=[f"{k}-{kind}" for k, kind, _ in CASES])
def test_every_bad_value_of_every_key_is_refused_with_the_key(base, key, kind, value):
    cfg = OmegaConf.create(base)
    OmegaConf.update(cfg, key, value, force_add=True, merge=False)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert key in str(err.value), (key, value, str(err.value))
