"""Assertions shared by the data tests (imported as a plain module next to the tests)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from napo_lab.config.compose import group
from napo_lab.data.prepared import PreparedDataset

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf" / "dataset"


def dataset_cfg(name: str, **overrides: Any) -> dict[str, Any]:
    """conf/dataset/<name>.yaml as composed (its shared base applied), a plain dict with top-level overrides."""
    cfg = OmegaConf.to_container(group("dataset", name), resolve=True)
    cfg.update(overrides)
    return cfg  # type: ignore[return-value]


def assert_contract(ds: PreparedDataset) -> None:
    """docs/ARCHITECTURE.md section 1, checked on every split of a prepared dataset."""
    m = ds.manifest
    for key in ("name", "domain", "sources", "seed", "parameters", "splits", "counts", "warnings", "notes",
                "default_val_split", "default_test_split"):
        assert key in m, key
    assert m["domain"] in ("music", "movie", "book", "item")
    assert ds.items["item_id"].tolist() == list(range(ds.n_items))
    assert ds.items["title"].map(lambda t: isinstance(t, str) and t.strip() != "").all()
    assert ds.items["title"].is_unique
    assert {"train", m["default_val_split"], m["default_test_split"]} <= set(m["splits"])
    params = m["parameters"]
    for name, n_rows in m["splits"].items():
        df = ds.split(name)
        assert len(df) == n_rows
        lengths = df["history"].map(len)
        assert lengths.min() >= params["min_history"] and lengths.max() <= params["max_history"]
        for h, t in zip(df["history"], df["target"]):
            assert 0 <= t < ds.n_items and t not in set(h.tolist())
        if name == "train":
            assert list(df.columns) == ["user", "history", "target"]
            continue
        assert list(df.columns) == ["user", "history", "target", "candidates"]
        for h, t, c in zip(df["history"], df["target"], df["candidates"]):
            assert len(c) == params["n_candidates"] and int(np.sum(c == t)) == 1
            assert len(set(c.tolist())) == len(c) and not set(c.tolist()) & set(h.tolist())
    assert int(ds.train_counts.sum()) == m["counts"]["n_train_interactions"]


def file_hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}
