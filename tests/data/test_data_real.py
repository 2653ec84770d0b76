"""Points 1-4 on the real sources: LastFM, MovieLens, Goodreads prepared from NAPO_LAB_DATA_DIR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from data_helpers import assert_contract, dataset_cfg, file_hashes

from napo_lab.data.sources.lastfm import read_id2name
from napo_lab.prepare import ensure_prepared


def test_lastfm_counts_and_contract(prepared_real):
    ds = prepared_real("lastfm")
    assert_contract(ds)
    assert ds.manifest["splits"] == {"train": 47872, "val": 2767, "test": 2495, "val_llara": 122, "test_llara": 122}
    assert ds.n_items == 4606 and ds.domain == "music"
    users = ds.manifest["counts"]["users"]
    assert (users["train"], users["val"], users["test"]) == (976, 122, 122)
    assert ds.manifest["warnings"]["train/short_history_dropped"] == 2928  # nothing dropped silently


def test_lastfm_candidates_equal_sdpo_json(prepared_real, data_dir: Path):
    ds = prepared_real("lastfm")
    titles = read_id2name(data_dir / "lastfm/sdpo_napo/id2name.txt")
    assert ds.titles == titles
    for split, fname in (("val", "lastfm-val.json"), ("test", "lastfm-test.json")):
        records = json.loads((data_dir / "lastfm/sdpo_json" / fname).read_text(encoding="utf-8"))
        df = ds.split(split)
        assert len(records) == len(df)
        for rec, h, t, c in zip(records, df["history"], df["target"], df["candidates"]):
            assert rec["historyList"] == "::".join(titles[i] for i in h)
            assert rec["trueSelection"] == titles[t]
            assert rec["itemList"] == [titles[i] for i in c]


def test_lastfm_llara_splits_are_last_windows(prepared_real):
    ds = prepared_real("lastfm")
    assert ds.manifest["default_test_split"] == "test"  # the 122-row split is opt-in
    for small, full in (("val_llara", "val"), ("test_llara", "test")):
        last = ds.split(full).groupby("user").tail(1).set_index("user")
        for u, h, t in zip(ds.split(small)["user"], ds.split(small)["history"], ds.split(small)["target"]):
            assert last.loc[u, "target"] == t and np.array_equal(last.loc[u, "history"], h)
    assert set(ds.split("train")["user"]).isdisjoint(ds.split("test")["user"])


def test_movielens_protocol(prepared_real):
    ds = prepared_real("movielens")
    assert_contract(ds)
    m = ds.manifest
    assert m["splits"]["val"] == 94 and m["splits"]["test"] == 95
    assert m["counts"]["users"]["train"] == 754
    assert m["llara_rows_in_timestamp_order"] == 189
    assert any("RECONSTRUCTED" in note for note in m["notes"])
    users = [set(ds.split(s)["user"]) for s in ("train", "val", "test")]
    assert not (users[0] & users[1] or users[0] & users[2] or users[1] & users[2])
    titles = ds.titles
    assert "The Shawshank Redemption" in titles
    assert "An American Werewolf in London" in titles  # LLaRA's ", An" bug would give "A American ... Londonn"
    assert not any(t.endswith((", The", ", A", ", An")) for t in titles)


def test_goodreads_labelled_and_unmatched_counted(prepared_real):
    ds = prepared_real("goodreads")
    assert_contract(ds)
    m = ds.manifest
    assert any("NOT the S-DPO" in note for note in m["notes"])
    assert m["unmatched_titles"] == {"train": 10, "val": 2, "test": 10}
    assert m["warnings"]["test/unmatched_target_rows_dropped"] == 2
    assert m["splits"]["val"] == 255 and m["splits"]["test"] == 996
    assert "seed=0" in m["candidate_rule"]


def test_real_prepare_is_byte_identical(prepared_real, data_dir: Path, tmp_path: Path):
    first = prepared_real("lastfm").root
    second = ensure_prepared(dataset_cfg("lastfm"), data_dir, tmp_path)
    assert first.name == second.name
    assert file_hashes(first) == file_hashes(second)


def test_movielens_from_grouplens_u_data_gives_same_tables(prepared_real, data_dir: Path, tmp_path: Path):
    """Point 5: GroupLens' u.data (what a download yields) and RecBole's copy give identical tables."""
    local = tmp_path / "data" / "movielens"
    (local / "ml-100k").mkdir(parents=True)
    (local / "llara").symlink_to(data_dir / "movielens" / "llara")
    inter = (data_dir / "movielens/ml-100k/ml-100k.inter").read_text().splitlines()[1:]
    (local / "ml-100k/u.data").write_text("".join(line + "\n" for line in inter))
    cfg = dataset_cfg("movielens")
    cfg["files"]["ratings"] = "movielens/ml-100k/u.data"
    root = ensure_prepared(cfg, tmp_path / "data", tmp_path / "cache")
    ref = prepared_real("movielens")
    ours, theirs = file_hashes(root), file_hashes(ref.root)
    for name in ("items.parquet", "train.parquet", "val.parquet", "test.parquet"):
        assert ours[name] == theirs[name], name
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["ratings_content_sha256"] == ref.manifest["ratings_content_sha256"]
    assert "movielens/ratings_differ_from_ml100k" not in manifest["warnings"]
