"""On-disk cache of the frozen reference model's completion log-probs.

The reference (the SFT adapter, frozen) gives a (prompt, completion) pair the same log-prob in every
epoch, run and sweep job, so it is computed once and read back afterwards. Entries are keyed by
(sha of the prompt token ids, sha of the completion token ids): random templates and freshly drawn
negatives simply become more entries. Everything that changes the numbers is in the directory key
(model identity, sha256 of the reference adapter's weights file, prepared dataset, prompt settings,
forward layout and precision; napo_lab.recipe.keys builds it): a changed reference lands in a new
directory, so it is never read from a stale one. The directory is a napo_lab.cache entry whose
``key.json`` records what the key was made of.

Storage is one SQLite database per key in WAL mode (``INSERT OR IGNORE``, no pickle): any number of
processes (sweep jobs, DDP ranks) read and write it at once. WAL needs a local file system (not NFS).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napo_lab.cache import CacheEntry, atomic_write_text

log = logging.getLogger(__name__)

CACHE_VERSION = 1
DB_NAME = "ref_logps.sqlite"


def _ids_sha(ids: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(list(ids), dtype=np.int64).tobytes()).hexdigest()[:32]


def cache_key(parts: Mapping[str, Any]) -> str:
    """The directory key: sha256 of the JSON of everything that determines the reference's numbers."""
    return hashlib.sha256(json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str).encode()).hexdigest()


class RefLogpCache:
    """Reference log-probs of (prompt, completion) pairs under ``root/<key>/``.

    ``lookup(batch)`` returns a float32 tensor [B, W] (W = ``batch["item_ids"].shape[1]``; empty
    slots are 0, as the scorer gives them) only when every completion of the batch is cached, else
    None. ``store(batch, ref)`` records the valid entries of a computed [B, W] tensor.
    """

    def __init__(self, root: Path | str, key: str, describe: Mapping[str, Any] | None = None):
        self.root, self.key = Path(root), str(key)
        self.entry = CacheEntry(self.root / self.key, DB_NAME)
        self.dir = self.entry.path
        self.path = self.dir / DB_NAME
        self.hits = self.misses = self.stored = 0
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._memo: dict[tuple[str, str], float] = {}
        self.dir.mkdir(parents=True, exist_ok=True)
        if describe is not None and not (self.dir / "key.json").is_file():
            atomic_write_text(self.dir / "key.json", json.dumps(dict(describe), indent=2, sort_keys=True, default=str))

    # -- storage -------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share a connection across fork
            conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("CREATE TABLE IF NOT EXISTS ref (p TEXT NOT NULL, c TEXT NOT NULL, v REAL NOT NULL, "
                         "PRIMARY KEY (p, c)) WITHOUT ROWID")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def __getstate__(self):  # picklable for spawned workers / DDP: the connection is reopened there
        state = dict(self.__dict__)
        state["_conn"], state["_pid"] = None, None
        return state

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM ref").fetchone()[0])

    # -- the seam used by RecLitModule._reference ------------------------------------------------
    @staticmethod
    def _keys(batch: Mapping[str, Any]) -> list[list[tuple[str, str]]]:
        comps = batch["completion_ids"]
        mask = batch.get("mask")
        mask = mask.detach().cpu() if isinstance(mask, torch.Tensor) else None
        out = []
        for b, prompt in enumerate(batch["prompt_ids"]):
            p = _ids_sha(prompt)
            row = []
            for j, c in enumerate(comps[b]):
                if mask is not None and j < mask.shape[1] and not bool(mask[b, j]):
                    row.append(None)
                else:
                    row.append((p, _ids_sha(c)))
            out.append(row)
        return out

    def lookup(self, batch: Mapping[str, Any]) -> torch.Tensor | None:
        keys = self._keys(batch)
        wanted = {k for row in keys for k in row if k is not None and k not in self._memo}
        if wanted:
            db = self._db()
            for p, c in wanted:
                got = db.execute("SELECT v FROM ref WHERE p = ? AND c = ?", (p, c)).fetchone()
                if got is None:
                    self.misses += 1
                    return None
                self._memo[(p, c)] = float(got[0])
        width = int(batch["item_ids"].shape[1])
        out = torch.zeros((len(keys), width), dtype=torch.float32)
        for b, row in enumerate(keys):
            for j, k in enumerate(row[:width]):
                if k is not None:
                    out[b, j] = self._memo[k]
        self.hits += 1
        return out

    def store(self, batch: Mapping[str, Any], ref: torch.Tensor) -> None:
        values = ref.detach().float().cpu()
        rows = []
        for b, row in enumerate(self._keys(batch)):
            for j, k in enumerate(row[: values.shape[1]]):
                if k is not None:
                    v = float(values[b, j])
                    if np.isfinite(v):
                        rows.append((k[0], k[1], v))
                        self._memo[k] = v
        if rows:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO ref (p, c, v) VALUES (?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.stored += len(rows)
