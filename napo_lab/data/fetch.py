"""Locate source files: a local copy under ``paths.data_dir`` first, else a verified, cached download.

Every known source file has a path relative to the data directory (the layout of the shared data
folder, e.g. ``lastfm/sdpo_napo/train_data.df``), its sha256 and where it was published. With a
network, files come from the original publishers (Hugging Face dataset ``joyliao7777/LLaRA``, the
authors' GitHub repositories, GroupLens), are checked against the sha256 and cached under
``<cache_dir>/sources/``. Offline, one ``DataError`` lists every file expected and the setting that
points napo_lab at a local copy. Set ``NAPO_LAB_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) to never try.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from napo_lab.data.prepared import DataError, sha256_file

log = logging.getLogger(__name__)

LLARA_HF = ("joyliao7777/LLaRA", "88e1e386a7a15bb10f7d84ba5199f43b23b75377")
NAPO_GH = "https://github.com/acoding-xuan/NAPO/raw/7d8c38e3b9e6/data/ref/lastfm/"
SDPO_GH = "https://github.com/chenyuxin1999/S-DPO/raw/07befa4141/sample_data/lastfm-sft-cans20/"
SPREC_GH = "https://github.com/RegionCh/SPRec/raw/5fec95b793/"
SAMPLES_GH = "https://github.com/flora0110/Negative_Sampling/raw/ea8e1efb09/sampled_data/"
ML100K_ZIP = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"


@dataclass(frozen=True)
class SourceFile:
    """One source file: ``rel`` under the data dir, its sha256, and how to download it."""

    rel: str
    sha256: str | None
    url: str | None = None  # plain https download
    hf_path: str | None = None  # file inside the LLaRA Hugging Face dataset
    zip_member: str | None = None  # member of the archive at ``url``


_FILES = [
    SourceFile("lastfm/sdpo_napo/train_data.df", "9226c199a5498978353b841b2e70f61a338b362c2eb4528f21244d97b9d09eba", NAPO_GH + "train_data.df"),
    SourceFile("lastfm/sdpo_napo/Val_data.df", "7ce8819d4c3cefc285cb34836ebf0e5cea2e88b27d4374b29f137933e78a2836", NAPO_GH + "Val_data.df"),
    SourceFile("lastfm/sdpo_napo/Test_data.df", "718baa7a3b1465aab2444308ba3d7d9e0b06c90d4cc0b2b6bd7ae10aaf6c53df", NAPO_GH + "Test_data.df"),
    SourceFile("lastfm/sdpo_napo/id2name.txt", "b7c8a2fdb6b2ee033e4acd105b233e5572d462a5a7e08e4a0cf415dbba9e7f64", NAPO_GH + "id2name.txt"),
    SourceFile("lastfm/llara/train_data.df", "7db71a60d3da4c449091fbc254efc9602f81eec6eb9a60534811ccd61974dbc1", hf_path="lastfm/train_data.df"),
    SourceFile("lastfm/llara/Val_data.df", "92a1ddb65ebdeff999f910b65660eb3d8c7cd85e6a19308d80c429481839f8b3", hf_path="lastfm/Val_data.df"),
    SourceFile("lastfm/llara/Test_data.df", "cac058a2842b2a3ed4d39ed1fa0a742f5034a23c9851a2ffc157b4845d703570", hf_path="lastfm/Test_data.df"),
    SourceFile("lastfm/llara/id2name.txt", "b608bcf14300b1608ccd88f4fe240e6345125201ecdb55157395c19787fe4eaf", hf_path="lastfm/id2name.txt"),
    SourceFile("lastfm/sdpo_json/lastfm-val.json", "4fe1044f3c95eb77d402d0fc2d1b513bf3a585225c344b8f84c23b1c3f3007a4", SDPO_GH + "lastfm-val.json"),
    SourceFile("lastfm/sdpo_json/lastfm-test.json", "868fe7570f4fdeea9cbbf3fb85c1fdadc20cf2f375e7a70247dae7d34d867983", SDPO_GH + "lastfm-test.json"),
    SourceFile("movielens/llara/Val_data.df", "9a950900d0055649e2983ef403d189d5fdc5bd4f84d229a377806d371b32e460", hf_path="movielens/Val_data.df"),
    SourceFile("movielens/llara/Test_data.df", "d38308a0078d4518dc9eeb619c8d1afb53d830712cc7d36ac51cc47eaafc97d6", hf_path="movielens/Test_data.df"),
    SourceFile("movielens/llara/u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701", hf_path="movielens/u.item"),
    # RecBole's copy of u.data (same rows); downloads fetch GroupLens' u.data instead (see below).
    SourceFile("movielens/ml-100k/ml-100k.inter", "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
    # GroupLens archive: no pinned sha256 for the zip itself is known here, so each member is
    # verified after extraction (u.item equals LLaRA's copy byte for byte).
    SourceFile("movielens/ml-100k/u.data", None, ML100K_ZIP, zip_member="ml-100k/u.data"),
    SourceFile("goodreads/sprec/train.json", "c81b048a15c5051f7d942cd9d1610aff7330fa1f52e3eaed2b0ffad197c073a8", SPREC_GH + "data/Goodreads/train.json"),
    SourceFile("goodreads/sprec/id2name.json", "2c275735eb004f08ccd3464cfd98530ae7b3e446a05ff829550d5e30bf1b23b1", SPREC_GH + "eval/Goodreads/id2name.json"),
    SourceFile("goodreads/sprec/name2id.json", "1ab171e265a45e752d27fce638950913f8fc32291db9e564592fd4e1858cee19", SPREC_GH + "eval/Goodreads/name2id.json"),
    SourceFile("goodreads/sprec_samples/valid_sample.json", "f4c608a3e27cb15e30f177344b6e97079ef6aaa40f9f1a178407a28633dfb575", SAMPLES_GH + "valid_sample.json"),
    SourceFile("goodreads/sprec_samples/test_sample.json", "0479870687d016a7a92fe1eaab47b8c2079bfe92e8aa528f7ef02b7fcf4a0ea8", SAMPLES_GH + "test_sample.json"),
]
KNOWN_FILES: dict[str, SourceFile] = {f.rel: f for f in _FILES}


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("NAPO_LAB_OFFLINE", "HF_HUB_OFFLINE"))


def _verify(path: Path, spec: SourceFile) -> None:
    if spec.sha256 is not None and sha256_file(path) != spec.sha256:
        path.unlink(missing_ok=True)
        raise DataError(f"download of {spec.rel} failed verification (sha256 mismatch); the file was removed, retry")


def _download_url(url: str, dest: Path) -> None:
    """Stream ``url`` into ``dest`` with a rich progress bar (atomic: temp file then rename)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "napo_lab"})
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - fixed https URLs
        total = int(resp.headers.get("Content-Length") or 0) or None
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as out, Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn()
        ) as bar:
            task = bar.add_task(dest.name, total=total)
            while block := resp.read(1 << 16):
                out.write(block)
                bar.update(task, advance=len(block))
    os.replace(tmp, dest)


def _download(spec: SourceFile, cache: Path) -> Path:
    dest = cache / spec.rel
    if spec.hf_path is not None:
        from huggingface_hub import hf_hub_download

        got = Path(hf_hub_download(LLARA_HF[0], spec.hf_path, repo_type="dataset", revision=LLARA_HF[1],
                                   cache_dir=str(cache / "hf")))
        _verify(got, spec)
        return got
    assert spec.url is not None
    if spec.zip_member is None:
        _download_url(spec.url, dest)
    else:
        archive = cache / "archives" / spec.url.rsplit("/", 1)[-1]
        if not archive.is_file():
            _download_url(spec.url, archive)
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(spec.zip_member)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as fh:
            fh.write(data)
    _verify(dest, spec)
    return dest


def offline_error(rels: Sequence[str], data_dir: Path | None, reason: str = "") -> DataError:
    where = f"are not under {data_dir}" if data_dir else "have no local copy (no data directory is set)"
    reason = reason.split(". ")[0][:160] if reason else ""
    return DataError(
        f"the dataset's source files {where} and could not be downloaded{' (' + reason + ')' if reason else ''}. "
        "Expected: " + ", ".join(rels)
        + ". Point napo_lab at a local copy with paths.data_dir=/path/to/data (or the NAPO_LAB_DATA_DIR "
        "environment variable); the files must sit at those relative paths."
    )


def resolve(
    rels: Sequence[str], data_dir: Path | str | None, cache_dir: Path | str, allow_download: bool = True
) -> dict[str, Path]:
    """Map each relative path to a readable file: local copy, else cached download, else download."""
    data_dir = Path(data_dir) if data_dir else None
    cache = Path(cache_dir) / "sources"
    found: dict[str, Path] = {}
    missing: list[str] = []
    for rel in rels:
        if data_dir is not None and (data_dir / rel).is_file():
            found[rel] = data_dir / rel
        elif (cache / rel).is_file():
            found[rel] = cache / rel
        else:
            missing.append(rel)
    if not missing:
        return found
    unknown = [rel for rel in missing if rel not in KNOWN_FILES]
    if not allow_download or _offline():
        raise offline_error(missing, data_dir, "downloads disabled (dataset.source=local or NAPO_LAB_OFFLINE)")
    if unknown:
        raise offline_error(missing, data_dir, f"no download source is known for {unknown}")
    for rel in missing:
        try:
            log.info("downloading %s", rel)
            found[rel] = _download(KNOWN_FILES[rel], cache)
        except DataError:
            raise
        except (OSError, urllib.error.URLError, zipfile.BadZipFile, KeyError) as err:
            raise offline_error(missing, data_dir, f"{type(err).__name__}: {err}") from None
        except Exception as err:  # huggingface_hub raises its own hierarchy (offline, HTTP errors)
            raise offline_error(missing, data_dir, f"{type(err).__name__}: {err}") from None
    return found
