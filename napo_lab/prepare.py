"""Turn source files into a prepared dataset (docs/ARCHITECTURE.md section 1), once, atomically.

``ensure_prepared`` hashes (PREP_VERSION, the content-affecting parameters, the sha256 of every source
file) into the directory name, so a change of data, parameters or code gives a new directory and an
unchanged setup reuses the old one. Preparation writes into a temporary sibling directory and renames
it into place under a file lock, so concurrent runs (several GPUs, sweeps) never see half a dataset.

CLI (a Hydra app with its own small config, conf/prepare.yaml)::

    python -m napo_lab.prepare dataset=lastfm
    python -m napo_lab.prepare dataset=custom dataset.path=/path/interactions.csv
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from napo_lab.data.examples import (
    Built,
    PrepReport,
    add_candidates,
    check_candidates,
    clean_split,
    disambiguate_titles,
)
from napo_lab.data.fetch import resolve
from napo_lab.data.popularity import train_counts
from napo_lab.data.prepared import MANIFEST, DataError, PreparedDataset, sha256_file, write_prepared
from napo_lab.data.sampling import SDPO_RULE, SEEDED_RULE

log = logging.getLogger(__name__)

PREP_VERSION = 1
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# Keys read at load time by the DataModule / metrics: they do not change the prepared files.
RUNTIME_KEYS = frozenset(
    {"val_split", "test_split", "train_limit", "val_limit", "test_limit", "popularity", "source"}
)
DOMAINS = ("music", "movie", "book", "item")


def _builders() -> dict[str, Callable[[dict[str, Any], dict[str, Path], PrepReport], Built]]:
    from napo_lab.data.sources import custom, goodreads, lastfm, movielens, movielens_temporal, synthetic

    return {
        "lastfm": lastfm.build,
        "movielens": movielens.build,
        "movielens_temporal": movielens_temporal.build,
        "goodreads": goodreads.build,
        "custom": custom.build,
        "synthetic": synthetic.build,
    }


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
    if cfg.get("builder") == "custom":
        path = cfg.get("path")
        if not path or path == "???":
            raise DataError("dataset=custom needs dataset.path=/path/to/interactions.csv")
        p = Path(os.path.expanduser(str(path)))
        if not p.is_absolute() and data_dir and (Path(data_dir) / p).is_file():
            p = Path(data_dir) / p
        if not p.is_file():
            raise DataError(f"dataset.path={path}: file not found")
        return {str(path): p}
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
    builder_name = cfg.get("builder", cfg["name"])
    builders = _builders()
    if builder_name not in builders:
        raise DataError(f"unknown dataset builder {builder_name!r}; choose one of {sorted(builders)}")
    if cfg.get("domain") not in DOMAINS:
        raise DataError(f"dataset.domain must be one of {DOMAINS}, got {cfg.get('domain')!r}")
    report = PrepReport()
    built = builders[builder_name](cfg, files, report)
    n_items = len(built.items)
    items = built.items.reset_index(drop=True)
    if items["item_id"].tolist() != list(range(n_items)):
        raise DataError(f"{builder_name}: item ids must be contiguous 0..{n_items - 1}")
    items["title"] = disambiguate_titles(items["title"].tolist(), report, builder_name)
    n_cands, sampler = int(cfg["n_candidates"]), cfg.get("sampler", "seeded")
    splits = {}
    for name, df in built.splits.items():
        df = clean_split(df, name, n_items, int(cfg["min_history"]), int(cfg["max_history"]), report)
        if name != "train":
            df = add_candidates(df, n_items, n_cands, sampler, int(cfg.get("seed", 0)))
            check_candidates(df, name, n_cands)
        splits[name] = df
    items["train_count"] = train_counts(splits["train"], n_items)
    params = {k: v for k, v in sorted(cfg.items()) if k not in RUNTIME_KEYS}
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


def ensure_prepared(dataset_cfg: Any, data_dir: Path | str | None = None, cache_dir: Path | str | None = None) -> Path:
    """Prepare ``dataset_cfg`` unless an identical preparation exists; return its directory."""
    cfg = _plain(dataset_cfg)
    cache = Path(cache_dir or os.environ.get("NAPO_LAB_CACHE_DIR") or Path.home() / ".cache" / "napo_lab")
    files = _resolve_files(cfg, data_dir, cache)
    checksums = {rel: sha256_file(path) for rel, path in sorted(files.items())}
    params = {k: v for k, v in sorted(cfg.items()) if k not in RUNTIME_KEYS}
    root = cache / "prepared" / f"{cfg['name']}-{_fingerprint(params, checksums)}"
    if (root / MANIFEST).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    lock = root.parent / ".locks" / f"{root.name}.lock"
    lock.parent.mkdir(exist_ok=True)
    with FileLock(str(lock)):
        if (root / MANIFEST).is_file():  # another process finished while we waited
            return root
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{root.name}.", dir=root.parent))
        try:
            start = time.perf_counter()
            build_prepared(cfg, files, {rel: checksums[rel] for rel in sorted(checksums)}, tmp)
            try:
                os.rename(tmp, root)
            except OSError:  # lost a race without the lock (e.g. a lock-less filesystem)
                if not (root / MANIFEST).is_file():
                    raise
            log.info("prepared %s in %.2fs -> %s", cfg["name"], time.perf_counter() - start, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _summary(root: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    ds = PreparedDataset.load(root)
    m = ds.manifest
    table = Table(title=f"{m['name']} ({m['domain']}): {m['counts']['n_items']} items")
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("users", justify="right")
    for name, n in m["splits"].items():
        default = " (default val)" if name == m["default_val_split"] else (
            " (default test)" if name == m["default_test_split"] else "")
        table.add_row(name + default, str(n), str(m["counts"]["users"][name]))
    console = Console()
    console.print(table)
    for kind, n in m["warnings"].items():
        console.print(f"[yellow]warning[/] {kind}: {n}")
    console.print(f"prepared in {seconds:.2f}s -> [bold]{root}[/]")


def _app() -> None:
    import hydra
    from omegaconf import DictConfig

    @hydra.main(config_path=CONF_DIR, config_name="prepare", version_base="1.3")
    def _main(cfg: DictConfig) -> None:
        start = time.perf_counter()
        try:
            root = ensure_prepared(cfg.dataset, cfg.paths.data_dir, cfg.paths.cache_dir)
        except DataError as err:  # Hydra would print a traceback; the message is enough
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        _summary(root, time.perf_counter() - start)

    _main()


def main() -> None:
    """Console entry point: print DataError messages without a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _app()
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
