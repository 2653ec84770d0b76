"""Points 5 and 6: safe pickles, offline errors, download verification, validation, custom CSV."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
from data_helpers import assert_contract, dataset_cfg

from napo_lab.data import fetch
from napo_lab.data.examples import PrepReport, clean_split, disambiguate_titles
from napo_lab.data.prepared import DataError, PreparedDataset
from napo_lab.data.safe_pickle import load_known_pickle
from napo_lab.data.sources.movielens import clean_title
from napo_lab.prepare import ensure_prepared


def test_unknown_pickle_is_refused(tmp_path: Path):
    path = tmp_path / "train_data.df"
    path.write_bytes(pickle.dumps(pd.DataFrame({"seq": [[1]], "len_seq": [1], "next": [2]})))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_known_pickle(path)


def test_known_pickle_loads(data_dir: Path):
    df = load_known_pickle(data_dir / "lastfm/llara/Test_data.df")
    assert len(df) == 122


def test_offline_error_names_files_and_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NAPO_LAB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        ensure_prepared(dataset_cfg("lastfm"), None, tmp_path)
    msg = str(err.value)
    assert "lastfm/sdpo_napo/train_data.df" in msg and "lastfm/llara/Test_data.df" in msg
    assert "paths.data_dir" in msg and "NAPO_LAB_DATA_DIR" in msg


def test_network_failure_gives_the_same_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NAPO_LAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # CI sets it; these tests fake the network
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", no_network)
    with pytest.raises(DataError, match="NAPO_LAB_DATA_DIR") as err:
        fetch.resolve(["goodreads/sprec/train.json"], tmp_path / "nowhere", tmp_path)
    assert "goodreads/sprec/train.json" in str(err.value) and "URLError" in str(err.value)


def test_download_is_verified_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NAPO_LAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # CI sets it; these tests fake the network
    calls = []

    def fake_download(url: str, dest: Path) -> None:
        calls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"tampered")

    monkeypatch.setattr(fetch, "_download_url", fake_download)
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch.resolve(["goodreads/sprec/id2name.json"], None, tmp_path)
    assert calls and calls[0].startswith("https://github.com/RegionCh/SPRec/")
    assert not (tmp_path / "sources/goodreads/sprec/id2name.json").exists()
    # a verified file in the cache is used without any download
    good = tmp_path / "sources/goodreads/sprec/genre.json"
    good.parent.mkdir(parents=True, exist_ok=True)
    good.write_text("{}")
    assert fetch.resolve(["goodreads/sprec/genre.json"], None, tmp_path)["goodreads/sprec/genre.json"] == good


def test_validation_errors_and_counted_drops():
    report = PrepReport()
    df = pd.DataFrame({"user": [0, 0, 1], "history": [[1, 2, 3], [1, 2], [4, 5, 6, 7]], "target": [2, 3, 0]})
    out = clean_split(df, "train", 10, min_history=3, max_history=3, report=report)
    assert len(out) == 1 and out["history"][0] == [5, 6, 7]
    assert report.warnings == {"train/target_in_history_dropped": 1, "train/short_history_dropped": 1,
                               "train/history_truncated_to_max_history": 1}
    with pytest.raises(DataError, match="outside the catalogue"):
        clean_split(df, "val", 5, 3, 10, PrepReport())
    with pytest.raises(DataError, match="empty titles"):
        disambiguate_titles(["a", " "], PrepReport(), "x")
    report = PrepReport()
    assert disambiguate_titles(["a", "b", "a"], report, "x") == ["a", "b", "a [2]"]
    assert report.warnings["duplicate_titles_disambiguated"] == 1


@pytest.mark.parametrize(("raw", "clean"), [
    ("Shawshank Redemption, The (1994)", "The Shawshank Redemption"),
    ("American Werewolf in London, An (1981)", "An American Werewolf in London"),
    ("Bug's Life, A (1998)", "A Bug's Life"),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
     "The City of Lost Children (Cité des enfants perdus, La)"),
    ("Toy Story (1995)", "Toy Story"),
    ("unknown", "unknown"),
])
def test_movielens_title_cleaning(raw: str, clean: str):
    assert clean_title(raw)[0] == clean


def _write_csv(path: Path, n_users: int = 30, title_of=lambda i: f"Item {i}") -> Path:
    lines = ["user,item,timestamp,title"]
    for u in range(n_users):
        for k in range(8):
            item = (u * 3 + k) % 40
            lines.append(f"u{u},i{item},{1000 + k},{title_of(item)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_custom_csv_prepares(tmp_path: Path):
    csv = _write_csv(tmp_path / "inter.csv", title_of=lambda i: "Same" if i in (3, 4) else f"Item {i}")
    ds = PreparedDataset.load(ensure_prepared(dataset_cfg("custom", path=str(csv)), None, tmp_path))
    assert_contract(ds)
    assert ds.domain == "item" and ds.manifest["splits"]["val"] == 3 and ds.manifest["splits"]["test"] == 3
    assert ds.manifest["warnings"]["duplicate_titles_disambiguated"] == 1


def test_custom_csv_errors(tmp_path: Path):
    bad = tmp_path / "missing.csv"
    bad.write_text("user,item,title\nu,i,t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing columns \['timestamp'\]"):
        ensure_prepared(dataset_cfg("custom", path=str(bad)), None, tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user,item,timestamp,title\nu,i,1,Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8.*line 2"):
        ensure_prepared(dataset_cfg("custom", path=str(latin)), None, tmp_path)
    empty = _write_csv(tmp_path / "empty.csv", title_of=lambda i: "" if i == 7 else f"Item {i}")
    with pytest.raises(DataError, match="empty titles"):
        ensure_prepared(dataset_cfg("custom", path=str(empty)), None, tmp_path)
    with pytest.raises(DataError, match="dataset.path"):
        ensure_prepared(dataset_cfg("custom"), None, tmp_path)


def test_grouplens_zip_member_is_extracted_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import zipfile

    monkeypatch.delenv("NAPO_LAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # CI sets it; these tests fake the network
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t2\t3\t4\n")
    fetched: list[str] = []

    def fake_download(url: str, dest: Path) -> None:
        fetched.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(fetch, "_download_url", fake_download)
    path = fetch.resolve(["movielens/ml-100k/u.data"], None, tmp_path / "cache")["movielens/ml-100k/u.data"]
    assert path.read_text() == "1\t2\t3\t4\n" and fetched == [fetch.ML100K_ZIP]
    fetch.resolve(["movielens/ml-100k/u.data"], None, tmp_path / "cache")
    assert len(fetched) == 1  # cached


def test_hub_failure_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub

    monkeypatch.delenv("NAPO_LAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # CI sets it; these tests fake the network
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DataError, match="paths.data_dir") as err:
        fetch.resolve(["movielens/llara/Val_data.df"], None, tmp_path)
    assert "movielens/llara/Val_data.df" in str(err.value)
