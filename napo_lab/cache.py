"""One content-addressed cache entry: a directory named by a key, built once under a file lock and
published atomically. Every cache of napo_lab uses it: prepared datasets, the converted GGUF model,
SFT adapters, sequential models and reference log-probs.

* The key is the sha256 of the canonical JSON of everything that changes the content (``digest``).
* An entry is *ready* when its marker file exists. The marker is written last by the builder, so a
  ready entry is complete.
* ``get_or_build`` checks without a lock (the fast path), then takes ``.<entry>.lock`` (a hidden
  sibling file, so concurrent jobs on one file system build once and the others wait), checks again, builds
  into a temporary sibling directory and renames it into place. A kill during the build leaves only
  a ``.tmp-*`` directory, never a half entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock


def canonical(obj: Any) -> Any:
    """Plain containers (OmegaConf configs resolved) for hashing and JSON."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    return obj


def digest(obj: Any, n: int = 16) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj``'s sorted-key JSON."""
    text = json.dumps(canonical(obj), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file through a temporary sibling and a rename: readers see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # a shared cache: readable by the other users of the machine
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class CacheEntry:
    """The directory ``path``; ready when ``path / marker`` exists (and ``valid``, if given, agrees)."""

    def __init__(self, path: Path | str, marker: str, valid: Callable[[Path], bool] | None = None):
        self.path, self.marker, self._valid = Path(path), marker, valid

    @classmethod
    def under(cls, root: Path | str, name: str, key: Any, marker: str, **kw) -> CacheEntry:
        """``<root>/<name>-<digest(key)>``."""
        return cls(Path(root) / f"{name}-{digest(key)}", marker, **kw)

    @property
    def ready(self) -> bool:
        if not (self.path / self.marker).is_file():
            return False
        return self._valid(self.path) if self._valid is not None else True

    def lock(self, enabled: bool = True):
        """The entry's file lock (``enabled=False``: a no-op, e.g. on DDP ranks that follow rank 0)."""
        if not enabled:
            return contextlib.nullcontext()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path.parent / f".{self.path.name}.lock"))

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A temporary sibling directory that becomes the entry when the block exits normally."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{self.path.name}.", dir=self.path.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o755)
            if self.path.exists():  # an invalid entry (checked under the lock): replace it
                shutil.rmtree(self.path)
            os.rename(tmp, self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get_or_build(self, build: Callable[[Path], Any]) -> tuple[Path, bool]:
        """Return (path, reused). ``build(tmp_dir)`` fills a staging directory (marker last)."""
        if self.ready:
            return self.path, True
        with self.lock():
            if self.ready:  # another process finished while we waited
                return self.path, True
            with self.staging() as tmp:
                build(tmp)
        return self.path, False
