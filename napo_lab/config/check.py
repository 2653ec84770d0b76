"""A small type checker for composed configs: a dataclass (or a ``_target_``'s signature) is the
schema, and every problem is collected, not just the first.

Why not Hydra's own structured-config merge: it stops at the first bad value and reports it from
inside Hydra, before napo_lab runs, with a traceback, exit code 1 and no run record. Checking the
composed config here lists every problem at once, with its key and what it accepts, in napo_lab's
one-paragraph error style (exit code 2), and the dataclasses still document every field.

Field constraints live in the field metadata (``spec``): ``gt``/``ge``/``lt``/``le`` bounds, and
every float must be finite (NaN and inf are refused).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin

log = logging.getLogger(__name__)

MISSING_VALUE = "???"
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def spec(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Callable[[], Any] | None = None,
         **rules: Any) -> Any:
    """A dataclass field with a one-line ``doc`` and checking ``rules`` (gt, ge, lt, le)."""
    meta = {"doc": doc, **rules}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def docs(schema: type) -> dict[str, str]:
    """Field name -> its one-line documentation."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(schema)}


def _name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(dict.fromkeys(str(a) for a in get_args(tp)))
    if tp is type(None):
        return "null"
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_name(a) for a in get_args(tp))
    if get_origin(tp) in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(tp) or get_origin(tp) in (dict, Mapping):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


class Checker:
    """Collects problems as ``key=value: what is accepted`` strings."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, key: str, value: Any, accepts: str) -> None:
        self.problems.append(f"{key}={value!r}: {accepts}")

    # -- values ----------------------------------------------------------------------------------
    def value(self, key: str, value: Any, tp: Any, rules: Mapping[str, Any] | None = None) -> bool:
        """Check ``value`` against type ``tp`` (and numeric ``rules``); True when it is fine."""
        if isinstance(value, str) and value == MISSING_VALUE:
            self.problems.append(f"{key} is required (it is ??? in the config); set {key}=...")
            return False
        origin = get_origin(tp)
        if tp is Any:
            return True
        if origin in (Union, types.UnionType):
            args = get_args(tp)
            if value is None:
                if type(None) in args:
                    return True
                self.bad(key, value, f"expected {_name(tp)}")
                return False
            for arg in args:  # the first member the value fits (without recording its problems)
                probe = Checker()
                if arg is not type(None) and probe.value(key, value, arg, rules):
                    return True
            real = [a for a in args if a is not type(None)]
            if len(real) == 1:
                return self.value(key, value, real[0], rules)
            self.bad(key, value, f"expected {_name(tp)}")
            return False
        if origin is Literal:
            if value in get_args(tp) and not (isinstance(value, bool) and not any(
                    isinstance(a, bool) for a in get_args(tp))):
                return True
            self.bad(key, value, f"use one of {_name(tp)}")
            return False
        if tp is bool:
            if isinstance(value, bool):
                return True
            self.bad(key, value, "expected true or false")
            return False
        if tp in (int, float):
            return self._number(key, value, tp, rules or {})
        if tp is str:
            if isinstance(value, str):
                return True
            self.bad(key, value, "expected a string")
            return False
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                self.bad(key, value, "expected a list")
                return False
            (item,) = get_args(tp)[:1] or (Any,)
            return all([self.value(f"{key}[{i}]", v, item, rules) for i, v in enumerate(value)])
        if origin in (dict, Mapping):
            if not isinstance(value, Mapping):
                self.bad(key, value, "expected a mapping")
                return False
            item = get_args(tp)[1] if get_args(tp) else Any
            return all([self.value(f"{key}.{k}", v, item) for k, v in value.items()])
        if dataclasses.is_dataclass(tp):
            return self.node(key, value, tp)
        raise TypeError(f"schema type {tp!r} of {key} is not supported")

    def _number(self, key: str, value: Any, tp: type, rules: Mapping[str, Any]) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.bad(key, value, f"expected {'an integer' if tp is int else 'a number'}")
            return False
        if not math.isfinite(value):
            self.bad(key, value, "expected a finite number")
            return False
        if tp is int and value != int(value):
            self.bad(key, value, "expected an integer")
            return False
        for rule, ok, words in (("gt", lambda b: value > b, ">"), ("ge", lambda b: value >= b, ">="),
                                ("lt", lambda b: value < b, "<"), ("le", lambda b: value <= b, "<=")):
            bound = rules.get(rule)
            if bound is not None and not ok(bound):
                self.bad(key, value, f"must be {words} {bound}{rules.get('hint', '')}")
                return False
        return True

    # -- nodes -----------------------------------------------------------------------------------
    def node(self, key: str, value: Any, schema: type) -> bool:
        """A mapping checked field by field against a dataclass; unknown keys are listed together."""
        if not isinstance(value, Mapping):
            self.bad(key, value, f"expected a mapping with keys {', '.join(docs(schema))}")
            return False
        before = len(self.problems)
        hints = typing.get_type_hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema)}
        unknown = sorted(k for k in value if k not in fields)
        if unknown:
            self.problems.append(f"{key}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
        for name, f in fields.items():
            if name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.problems.append(f"{key}.{name} is missing ({f.metadata.get('doc', '')})")
                continue
            self.value(f"{key}.{name}", value[name], hints[name], f.metadata)
        return len(self.problems) == before

    def target(self, key: str, value: Any, ignore: tuple[str, ...] = ()) -> Any:
        """A ``_target_`` node: the target must import and every option must be one of its parameters
        (all unknown ones listed together). Returns the imported object, or None."""
        if not isinstance(value, Mapping) or "_target_" not in value:
            self.bad(key, value, "expected a mapping with a _target_ (the class or function to build)")
            return None
        from hydra.utils import get_object

        try:
            obj = get_object(str(value["_target_"]))
        except Exception as err:  # noqa: BLE001 - any import failure is a config problem
            self.problems.append(f"{key}._target_={value['_target_']!r} cannot be imported ({err})")
            return None
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            return obj
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return obj
        allowed = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
        unknown = sorted(k for k in value if k not in HYDRA_KEYS and k not in allowed and k not in ignore)
        if unknown:
            self.problems.append(f"{key}: unknown option(s) {', '.join(unknown)} for {value['_target_']}; "
                                 f"allowed: {', '.join(a for a in allowed if a not in ignore)}")
        return obj


def dataclass_from_mapping(cls: type, cfg: Any, ignored: tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from a mapping, coercing YAML strings like "1e-4" to the field's type."""
    if cfg is None:
        cfg = {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{cls.__name__} config must be a mapping, got {type(cfg).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in cfg if k not in fields and k not in ignored)
    if unknown:
        log.warning("%s: ignoring unknown keys %s", cls.__name__, unknown)
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for k, v in cfg.items():
        if k not in fields:
            continue
        default = getattr(defaults, k)
        if v is not None and isinstance(default, bool):
            v = v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")
        elif v is not None and isinstance(default, float):
            v = float(v)
        elif v is not None and isinstance(default, int):
            v = int(v)
        kwargs[k] = v
    return cls(**kwargs)
