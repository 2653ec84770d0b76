"""Points 1, 8 and 9 without real data: format, determinism, caching, synthetic data, popularity."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_helpers import assert_contract, dataset_cfg, file_hashes

from napo_lab.data.popularity import band_codes, popularity_bands, train_counts
from napo_lab.data.prepared import DataError, PreparedDataset
from napo_lab.prepare import ensure_prepared


def test_synthetic_contract(tmp_path: Path):
    root = ensure_prepared(dataset_cfg("synthetic"), None, tmp_path)
    ds = PreparedDataset.load(root)
    assert_contract(ds)
    assert 50 <= ds.n_items <= 100 and 200 <= len(ds.split("train")) <= 600
    assert len(ds.split("val")) == 100 and len(ds.split("test")) == 100
    assert max(len(t) for t in ds.titles) <= 20


def test_synthetic_is_learnable(synthetic: PreparedDataset):
    """A last-item -> next-item count model beats 1/20 by far on the frozen candidates."""
    follow: dict[int, Counter] = defaultdict(Counter)
    for h, t in zip(synthetic.split("train")["history"], synthetic.split("train")["target"]):
        follow[int(h[-1])][int(t)] += 1
    test = synthetic.split("test")
    hits = [max(c, key=lambda i: follow[int(h[-1])][int(i)]) == t
            for h, t, c in zip(test["history"], test["target"], test["candidates"])]
    assert np.mean(hits) > 0.5


def test_prepare_twice_is_byte_identical(tmp_path: Path):
    a = ensure_prepared(dataset_cfg("synthetic"), None, tmp_path / "a")
    b = ensure_prepared(dataset_cfg("synthetic"), None, tmp_path / "b")
    assert a.name == b.name and file_hashes(a) == file_hashes(b)
    assert set(file_hashes(a)) == {"items.parquet", "train.parquet", "val.parquet", "test.parquet", "manifest.json"}


def test_cache_reuse_params_and_race(tmp_path: Path):
    roots: list[Path] = []
    threads = [threading.Thread(target=lambda: roots.append(ensure_prepared(dataset_cfg("synthetic"), None, tmp_path)))
               for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(roots)) == 1 and len(list((tmp_path / "prepared").glob("synthetic-*"))) == 1
    assert not list((tmp_path / "prepared").glob(".tmp-*"))  # no temp dirs left behind
    # runtime keys (split choice, limits) do not change the prepared files; content keys do
    same = ensure_prepared(dataset_cfg("synthetic", test_split="val", test_limit=5), None, tmp_path)
    other = ensure_prepared(dataset_cfg("synthetic", seed=1), None, tmp_path)
    assert same == roots[0] and other != roots[0]


def test_unknown_split_and_missing_dir(synthetic: PreparedDataset, tmp_path: Path):
    with pytest.raises(DataError, match="available"):
        synthetic.split("test_llara")
    with pytest.raises(DataError, match="napo_lab.prepare"):
        PreparedDataset.load(tmp_path)


def test_popularity_bands_rule():
    counts = np.array([5, 0, 9, 1, 1, 3, 7, 2, 0, 4])
    bands = popularity_bands(counts, head_ratio=0.2, tail_ratio=0.3)
    assert bands.tolist().count("head") == 2 and bands.tolist().count("tail") == 3
    assert set(np.flatnonzero(bands == "head")) == {2, 6}
    assert set(np.flatnonzero(bands == "tail")) == {1, 8, 4}  # ties (1, 1) broken by id: 3 is mid, 4 tail
    assert band_codes(bands).tolist()[:3] == [1, 2, 0]
    with pytest.raises(ValueError):
        popularity_bands(counts, 0.7, 0.5)


def test_train_counts_counts_each_interaction_once():
    train = pd.DataFrame({"user": [0, 0, 1], "history": [[1, 2, 3], [1, 2, 3, 4], [4, 0, 2]], "target": [4, 5, 1]})
    # user 0's sequence is 1,2,3,4,5; user 1's is 4,0,2,1
    assert train_counts(train, 6).tolist() == [1, 2, 2, 1, 2, 1]


def test_synthetic_manifest_popularity(synthetic: PreparedDataset):
    bands = synthetic.popularity_bands(0.2, 0.2)
    assert len(bands) == synthetic.n_items
    head = synthetic.train_counts[bands == "head"].min()
    assert head >= synthetic.train_counts[bands == "tail"].max()


def test_a_catalogue_too_small_for_the_candidate_lists_names_the_keys(tmp_path: Path):
    """2 chains of 12 items cannot give 19 negatives outside a 8-item history: a DataError naming the fix."""
    with pytest.raises(DataError, match=r"dataset.n_candidates=20 needs 19\. Lower dataset.n_candidates"):
        ensure_prepared(dataset_cfg("synthetic", n_clusters=2, cluster_size=12), None, tmp_path)
    assert not any(p.suffix == ".parquet" for p in tmp_path.rglob("*"))  # nothing half-written
