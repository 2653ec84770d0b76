"""Shared fixtures for the data tests: the real data dir and session-prepared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from data_helpers import REPO, dataset_cfg

from napo_lab.data.prepared import PreparedDataset
from napo_lab.prepare import ensure_prepared


def _data_dir() -> Path | None:
    env = os.environ.get("NAPO_LAB_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


DATA_DIR = _data_dir()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if DATA_DIR is None or not (DATA_DIR / "lastfm").is_dir():
        pytest.skip("real data not found: set NAPO_LAB_DATA_DIR to the shared data directory (../shared/data)")
    return DATA_DIR


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("napo_cache")


@pytest.fixture(scope="session")
def prepared_real(data_dir: Path, session_cache: Path):
    """prepared_real(name) -> PreparedDataset, each real dataset prepared once per session."""
    cache: dict[str, PreparedDataset] = {}

    def get(name: str) -> PreparedDataset:
        if name not in cache:
            sub = data_dir / name
            if not sub.is_dir():
                pytest.skip(f"{sub} not found: the {name} source files are not in NAPO_LAB_DATA_DIR")
            cache[name] = PreparedDataset.load(ensure_prepared(dataset_cfg(name), data_dir, session_cache))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def synthetic(session_cache: Path) -> PreparedDataset:
    return PreparedDataset.load(ensure_prepared(dataset_cfg("synthetic"), None, session_cache))
