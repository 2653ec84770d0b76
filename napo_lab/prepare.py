"""`python -m napo_lab.prepare dataset=<name>`: prepare a dataset (napo_lab.data.prepare) and show it.

    python -m napo_lab.prepare dataset=lastfm
    python -m napo_lab.prepare dataset=custom dataset.path=/path/interactions.csv

A Hydra app with its own small config (conf/prepare.yaml). Runs prepare on first use anyway.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from napo_lab import CONF_DIR
from napo_lab.data.prepare import ensure_prepared
from napo_lab.data.prepared import DataError, PreparedDataset

__all__ = ["ensure_prepared", "main"]


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

    @hydra.main(config_path=str(CONF_DIR), config_name="prepare", version_base="1.3")
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
