"""The prepared-dataset format (docs/ARCHITECTURE.md section 1): writing it and reading it back.

A prepared dataset is a directory of Parquet tables plus ``manifest.json``. Everything downstream
(DataModule, sequential models, evaluation) reads only this format, so the raw sources (pickles,
JSON, CSV) are parsed in exactly one place (``napo_lab.prepare`` and ``napo_lab.data.sources``).

Files are written with pyarrow directly (fixed schema, no pandas metadata, fixed compression) and
the manifest with sorted keys and no timestamps, so preparing twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from napo_lab.errors import UserError

MANIFEST = "manifest.json"
ITEMS_FILE = "items.parquet"

ITEMS_SCHEMA = pa.schema(
    [("item_id", pa.int64()), ("title", pa.string()), ("train_count", pa.int64())]
)
TRAIN_SCHEMA = pa.schema(
    [("user", pa.int64()), ("history", pa.list_(pa.int64())), ("target", pa.int64())]
)
EVAL_SCHEMA = pa.schema(
    [
        ("user", pa.int64()),
        ("history", pa.list_(pa.int64())),
        ("target", pa.int64()),
        ("candidates", pa.list_(pa.int64())),
    ]
)
# Optional columns a builder may add (RecPO's data): written after the fixed ones when present.
OPTIONAL_FIELDS = {
    "history_ratings": pa.list_(pa.int64()),      # the rating of each history item (RecPO's prompt)
    "candidates": pa.list_(pa.int64()),           # train rows with their own candidate lists
    "candidate_scores": pa.list_(pa.float64()),   # RecPO's rating x recency score of each candidate
    "candidate_rated": pa.list_(pa.bool_()),      # True: a real future item; False: a random fill
}
# One fixed codec and no dictionary pages: the bytes depend only on the data and the pyarrow version.
_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3, "use_dictionary": False}


class DataError(UserError, ValueError):
    """A problem with the input data or its configuration that the user must fix.

    The CLI prints these without a traceback, so the message alone must name the file and the fix.
    """


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed (source files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _column(values: Any, dtype: pa.DataType) -> pa.Array:
    if pa.types.is_list(dtype):
        cast = {pa.float64(): float, pa.bool_(): bool}.get(dtype.value_type, int)
        return pa.array([[cast(v) for v in seq] for seq in values], type=dtype)
    if pa.types.is_string(dtype):
        return pa.array([str(v) for v in values], type=dtype)
    return pa.array(np.asarray(values, dtype=np.int64), type=dtype)


def write_table(df: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    """Write ``df``'s columns named in ``schema`` to ``path`` deterministically."""
    missing = [name for name in schema.names if name not in df.columns]
    if missing:
        raise DataError(f"internal: table for {path.name} lacks columns {missing}")
    extra = [pa.field(n, t) for n, t in OPTIONAL_FIELDS.items() if n in df.columns and n not in schema.names]
    schema = pa.schema(list(schema) + extra)
    arrays = [_column(df[field.name].tolist(), field.type) for field in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    pq.write_table(table, path, **_PARQUET_OPTIONS)


def write_manifest(manifest: Mapping[str, Any], path: Path) -> None:
    """Sorted keys, fixed indentation, trailing newline, no timestamps: byte-stable JSON."""
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_prepared(
    root: Path,
    items: pd.DataFrame,
    splits: Mapping[str, pd.DataFrame],
    manifest: Mapping[str, Any],
) -> None:
    """Write a complete prepared dataset into the (existing, empty) directory ``root``; the manifest
    (written last) records every file's size and sha256 (``verify_prepared`` checks them)."""
    write_table(items, ITEMS_SCHEMA, root / ITEMS_FILE)
    names = [ITEMS_FILE]
    for name, frame in splits.items():
        schema = TRAIN_SCHEMA if name == "train" else EVAL_SCHEMA
        write_table(frame, schema, root / f"{name}.parquet")
        names.append(f"{name}.parquet")
    files = {n: {"bytes": (root / n).stat().st_size, "sha256": sha256_file(root / n)} for n in names}
    write_manifest({**manifest, "files": files}, root / MANIFEST)


def verify_prepared(root: Path | str) -> str | None:
    """What is wrong with a prepared dataset directory (unreadable manifest, a file missing, truncated or
    changed since it was written), or None when every file matches its manifest entry."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        assert isinstance(files, dict) and files
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        return f"{MANIFEST} is unreadable or lists no file checksums ({type(err).__name__})"
    for name, want in sorted(files.items()):
        path = root / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want.get("bytes"):
            return f"{name} has {size} bytes, its manifest says {want.get('bytes')} (truncated or changed)"
        if sha256_file(path) != want.get("sha256"):
            return f"{name} does not match its manifest checksum (changed or corrupt)"
    return None


class PreparedDataset:
    """Read-only view of a prepared dataset directory (the only data API other modules use).

    ``split(name)`` returns a DataFrame whose ``history`` / ``candidates`` cells are int64 numpy
    arrays (history oldest first). Tables are read lazily and cached per instance.
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._splits: dict[str, pd.DataFrame] = {}

    @classmethod
    def load(cls, root: Path | str) -> PreparedDataset:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise DataError(
                f"{path} not found: {root} is not a prepared dataset; run "
                "`python -m napo_lab.prepare dataset=<name>` first"
            )
        return cls(root, json.loads(path.read_text(encoding="utf-8")))

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def domain(self) -> str:
        return str(self.manifest["domain"])

    @cached_property
    def items(self) -> pd.DataFrame:
        return pq.read_table(self.root / ITEMS_FILE).to_pandas()

    @property
    def n_items(self) -> int:
        return int(self.manifest["counts"]["n_items"])

    @cached_property
    def titles(self) -> list[str]:
        return self.items["title"].tolist()

    @cached_property
    def train_counts(self) -> np.ndarray:
        """Train interactions per item (see ``napo_lab.data.popularity.train_counts``)."""
        return self.items["train_count"].to_numpy(dtype=np.int64)

    def popularity_bands(self, head_ratio: float = 0.2, tail_ratio: float = 0.2) -> np.ndarray:
        from napo_lab.data.popularity import popularity_bands

        return popularity_bands(self.train_counts, head_ratio, tail_ratio)

    @property
    def split_names(self) -> list[str]:
        return list(self.manifest["splits"])

    def split(self, name: str) -> pd.DataFrame:
        if name not in self.manifest["splits"]:
            raise DataError(
                f"split {name!r} is not in {self.root / MANIFEST}; available: {self.split_names}"
            )
        if name not in self._splits:
            self._splits[name] = pq.read_table(self.root / f"{name}.parquet").to_pandas()
        return self._splits[name]

    def __repr__(self) -> str:
        return f"PreparedDataset({self.name!r}, n_items={self.n_items}, splits={self.manifest['splits']})"
