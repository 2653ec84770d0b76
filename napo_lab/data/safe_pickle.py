"""Load pickles only when they are byte-for-byte one of the known published files.

Unpickling runs arbitrary code, and the LLaRA / S-DPO / NAPO data ship as pandas pickles. We
therefore check the sha256 of the file against the list below before calling pickle at all; any
other file is refused. Once loaded, the data is converted to Parquet and never pickled again.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import pandas as pd

from napo_lab.data.prepared import DataError, sha256_file

log = logging.getLogger(__name__)

# sha256 -> where the file was published (repository @ commit : path).
KNOWN_PICKLES: dict[str, str] = {
    "9226c199a5498978353b841b2e70f61a338b362c2eb4528f21244d97b9d09eba":
        "acoding-xuan/NAPO@7d8c38e3b9e6:data/ref/lastfm/train_data.df",
    "7ce8819d4c3cefc285cb34836ebf0e5cea2e88b27d4374b29f137933e78a2836":
        "acoding-xuan/NAPO@7d8c38e3b9e6:data/ref/lastfm/Val_data.df",
    "718baa7a3b1465aab2444308ba3d7d9e0b06c90d4cc0b2b6bd7ae10aaf6c53df":
        "acoding-xuan/NAPO@7d8c38e3b9e6:data/ref/lastfm/Test_data.df",
    "7db71a60d3da4c449091fbc254efc9602f81eec6eb9a60534811ccd61974dbc1":
        "joyliao7777/LLaRA (HF dataset):lastfm/train_data.df",
    "92a1ddb65ebdeff999f910b65660eb3d8c7cd85e6a19308d80c429481839f8b3":
        "joyliao7777/LLaRA (HF dataset):lastfm/Val_data.df",
    "cac058a2842b2a3ed4d39ed1fa0a742f5034a23c9851a2ffc157b4845d703570":
        "joyliao7777/LLaRA (HF dataset):lastfm/Test_data.df",
    "9a950900d0055649e2983ef403d189d5fdc5bd4f84d229a377806d371b32e460":
        "joyliao7777/LLaRA (HF dataset):movielens/Val_data.df",
    "d38308a0078d4518dc9eeb619c8d1afb53d830712cc7d36ac51cc47eaafc97d6":
        "joyliao7777/LLaRA (HF dataset):movielens/Test_data.df",
}


def load_known_pickle(path: Path | str) -> Any:
    """Unpickle ``path`` if (and only if) its sha256 is in ``KNOWN_PICKLES``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    digest = sha256_file(path)
    origin = KNOWN_PICKLES.get(digest)
    if origin is None:
        raise DataError(
            f"refusing to unpickle {path}: its sha256 {digest[:12]}... is not one of the known "
            "published files (unpickling can run arbitrary code). Use the original file, or convert "
            "your data to a CSV and prepare it with `dataset=custom dataset.path=...`"
        )
    log.debug("loading known pickle %s (%s)", path, origin)
    with open(path, "rb") as fh:
        obj = pickle.load(fh)  # noqa: S301 - checksum verified against the allowlist above
    if not isinstance(obj, pd.DataFrame):
        raise DataError(f"{path}: expected a pandas DataFrame pickle, got {type(obj).__name__}")
    return obj
