"""Turn source files into a prepared dataset (docs/ARCHITECTURE.md section 2), once, atomically.

``ensure_prepared`` hashes (PREP_VERSION, the content-affecting parameters, the sha256 of every source
file) into the directory name, so a change of data, parameters or code gives a new directory and an
unchanged setup reuses the old one. The entry is a napo_lab.cache.CacheEntry: preparation writes into a
temporary sibling directory renamed into place under a file lock, so concurrent runs never see half
a dataset.

The command line is ``python -m napo_lab.prepare dataset=<name>`` (napo_lab/prepare.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napo_lab.cache import CacheEntry
from napo_lab.data.examples import (
    PrepReport,
    add_candidates,
    check_candidates,
    clean_split,
    disambiguate_titles,
)
from napo_lab.data.fetch import resolve
from napo_lab.data.popularity import train_counts
from napo_lab.data.prepared import MANIFEST, DataError, sha256_file, verify_prepared, write_prepared
from napo_lab.data.sampling import SDPO_RULE, SEEDED_RULE

log = logging.getLogger(__name__)

PREP_VERSION = 1
# Keys read at load time by the DataModule / metrics: they do not change the prepared files.
RUNTIME_KEYS = frozenset({"val_split", "test_split", "train_limit", "val_limit", "test_limit", "popularity",
                          "source", "max_title_chars", "random_template", "ratings_protocol"})
DOMAINS = ("music", "movie", "book", "item")
_SOURCES = "napo_lab.data.sources."


def builder_name(cfg: Mapping[str, Any]) -> str:
    """The builder's short name: ``lastfm`` for ``napo_lab.data.sources.lastfm.build`` (the name the
    prepared-data fingerprint records), else its full ``_target_``."""
    node = cfg.get("builder")
    target = str(node.get("_target_", "")) if isinstance(node, Mapping) else str(node or cfg["name"])
    if target.startswith(_SOURCES) and target.endswith(".build"):
        return target[len(_SOURCES):-len(".build")]
    return target


def _builder(cfg: Mapping[str, Any]):
    from hydra.utils import instantiate

    node = cfg.get("builder")
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise DataError(f"dataset.builder={node!r}: expected a _target_ (e.g. napo_lab.data.sources.lastfm.build)")
    return instantiate(dict(node), _partial_=True)


def _params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The content-affecting parameters (the fingerprint's and the manifest's)."""
    params = {k: v for k, v in sorted(cfg.items()) if k not in RUNTIME_KEYS}
    params["builder"] = builder_name(cfg)
    if params["builder"] == "custom":  # the file is identified by its content (sources), not by how it was named
        params.pop("path", None)
    return params


def _plain(cfg: Any) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    return json.loads(json.dumps(dict(cfg)))


def _source_paths(cfg: Mapping[str, Any]) -> list[str]:
    files = cfg.get("files") or {}
    return sorted({str(v) for v in files.values() if v})


def _fingerprint(params: Mapping[str, Any], checksums: Mapping[str, str]) -> str:
    blob = json.dumps({"v": PREP_VERSION, "params": params, "sources": checksums}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _resolve_files(cfg: dict[str, Any], data_dir: Path | str | None, cache_dir: Path) -> dict[str, Path]:
    if builder_name(cfg) == "custom":
        path = cfg.get("path")
        if not path or path == "???":
            raise DataError("dataset=custom needs dataset.path=/path/to/interactions.csv")
        p = Path(os.path.expanduser(str(path)))
        if not p.is_absolute() and data_dir and (Path(data_dir) / p).is_file():
            p = Path(data_dir) / p
        if not p.is_file():
            raise DataError(f"dataset.path={path}: file not found")
        return {p.name: p}  # absolute or relative, the same file is the same dataset (one cache)
    rels = _source_paths(cfg)
    if not rels:
        return {}
    source = cfg.get("source", "auto")
    if source not in ("auto", "local", "hub"):
        raise DataError(f"dataset.source must be auto, local or hub, got {source!r}")
    # auto: local copy else download; local: never download; hub: ignore the local copy, download
    return resolve(rels, None if source == "hub" else data_dir, cache_dir, allow_download=source != "local")


def build_prepared(cfg: dict[str, Any], files: dict[str, Path], checksums: dict[str, str], out: Path) -> dict[str, Any]:
    """Run the builder, validate, draw candidates, write everything into ``out``; return the manifest."""
    name = builder_name(cfg)
    if cfg.get("domain") not in DOMAINS:
        raise DataError(f"dataset.domain must be one of {DOMAINS}, got {cfg.get('domain')!r}")
    report = PrepReport()
    built = _builder(cfg)(cfg, files, report)
    n_items = len(built.items)
    items = built.items.reset_index(drop=True)
    if items["item_id"].tolist() != list(range(n_items)):
        raise DataError(f"{name}: item ids must be contiguous 0..{n_items - 1}")
    items["title"] = disambiguate_titles(items["title"].tolist(), report, name)
    n_cands, sampler = int(cfg["n_candidates"]), cfg.get("sampler", "seeded")
    splits, raw = {}, {}
    for split, df in built.splits.items():
        raw[split] = len(df)
        df = clean_split(df, split, n_items, int(cfg["min_history"]), int(cfg["max_history"]), report)
        if split != "train" and len(df):
            df = add_candidates(df, n_items, n_cands, sampler, int(cfg.get("seed", 0)))
            check_candidates(df, split, n_cands)
        splits[split] = df
    _check_not_empty(str(cfg["name"]), n_items, raw, splits, report)
    items["train_count"] = train_counts(splits["train"], n_items)
    params = _params(cfg)
    manifest: dict[str, Any] = {
        "name": cfg["name"],
        "domain": cfg["domain"],
        "prep_version": PREP_VERSION,
        "seed": int(cfg.get("seed", 0)),
        "parameters": params,
        "sources": checksums,
        "candidate_rule": SDPO_RULE if sampler == "sdpo" else SEEDED_RULE.replace("seed,", f"seed={cfg.get('seed', 0)},"),
        "splits": {name: len(df) for name, df in splits.items()},
        "counts": {
            "n_items": n_items,
            "n_items_in_train": int((items["train_count"] > 0).sum()),
            "n_train_interactions": int(items["train_count"].sum()),
            "users": {name: int(df["user"].nunique()) for name, df in splits.items()},
        },
        "warnings": dict(sorted(report.warnings.items())),
        "notes": report.notes,
        "default_val_split": built.default_val_split,
        "default_test_split": built.default_test_split,
        **report.extra,
    }
    write_prepared(out, items, splits, manifest)
    return manifest


def _verified(root: Path) -> bool:
    """A cached preparation is used only when every file matches its manifest (else it is prepared again)."""
    problem = verify_prepared(root)
    if problem:
        log.warning("cached prepared data %s failed its check (%s): preparing it again", root, problem)
    return problem is None


def _check_not_empty(dataset: str, n_items: int, raw: dict[str, int], splits: dict[str, Any],
                     report: PrepReport) -> None:
    """Refuse a preparation with no items or an empty split, saying why the rows went away."""
    if n_items == 0:
        raise DataError(f"dataset {dataset}: the source holds no items (only a header, or empty files); "
                        "check the source files.")
    for split, df in splits.items():
        if len(df):
            continue
        why = ", ".join(f"{k.split('/', 1)[1]}: {v}" for k, v in report.warnings.items()
                        if k.startswith(f"{split}/") and v)
        raise DataError(
            f"dataset {dataset}: split {split!r} has no usable rows ({raw.get(split, 0)} from the source"
            f"{'; dropped ' + why if why else ''}). Each user needs at least dataset.min_history + 1 "
            "interactions (and enough users for train, val and test): add data or lower dataset.min_history.")


def ensure_prepared(dataset_cfg: Any, data_dir: Path | str | None = None, cache_dir: Path | str | None = None) -> Path:
    """Prepare ``dataset_cfg`` unless an identical preparation exists; return its directory."""
    cfg = _plain(dataset_cfg)
    cache = Path(cache_dir or os.environ.get("NAPO_LAB_CACHE_DIR") or Path.home() / ".cache" / "napo_lab")
    files = _resolve_files(cfg, data_dir, cache)
    checksums = {rel: sha256_file(path) for rel, path in sorted(files.items())}
    entry = CacheEntry(cache / "prepared" / f"{cfg['name']}-{_fingerprint(_params(cfg), checksums)}", MANIFEST,
                       valid=_verified)
    if entry.ready:
        return entry.path
    start = time.perf_counter()
    path, reused = entry.get_or_build(lambda tmp: build_prepared(cfg, files, dict(checksums), tmp))
    if not reused:
        log.info("prepared %s in %.2fs -> %s", cfg["name"], time.perf_counter() - start, path)
    return path
