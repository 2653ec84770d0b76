"""Data and predictions of the non-sequential family (``model=bprmf|lightgcn``); the recipe's
``cf_model_job`` trains with napo_lab.models.cf.train and evaluates these tables with the evaluator.

Data: the dataset's ratings file (``dataset.files.ratings``) split by the rating protocol
(``dataset.ratings_protocol``, napo_lab.data.ratings). Predictions: one row per user, its held-out
real positives (``relevant``) and their ranks among all items once the user's training items are
removed (``full_ranks``), in the one predictions schema (no candidates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from napo_lab.cache import canonical
from napo_lab.config.check import dataclass_from_mapping
from napo_lab.data.ratings import RatingsProtocol, RatingsSplit, load_ratings_split
from napo_lab.errors import UserError
from napo_lab.metrics.full_ranking import relevant_ranks
from napo_lab.models.cf.models import CFModel


def ratings_split_for(dataset_cfg: Any, data_dir: str | Path | None) -> RatingsSplit:
    """The rating-protocol split of ``dataset_cfg`` (it needs ``files.ratings``)."""
    ds = canonical(dataset_cfg) or {}
    rel = (ds.get("files") or {}).get("ratings")
    if not rel:
        raise UserError(f"dataset {ds.get('name')!r} has no files.ratings: the bprmf / lightgcn models need "
                        "explicit ratings; use dataset=movielens.")
    path = Path(rel) if Path(rel).is_absolute() else Path(data_dir or ".") / rel
    if not path.is_file():
        raise UserError(f"ratings file {path} not found; set paths.data_dir (NAPO_LAB_DATA_DIR) to the directory "
                        "holding movielens/ml-100k/.")
    return load_ratings_split(path, dataclass_from_mapping(RatingsProtocol, ds.get("ratings_protocol") or {}))


def predictions_table(model: CFModel, split: RatingsSplit, role: str) -> pd.DataFrame:
    """One row per user: ``user``, ``relevant`` (the user's ``role`` items), ``full_ranks``."""
    model.eval()
    relevant = getattr(split, role)
    ranks = relevant_ranks(model.scores().float(), relevant, split.train)
    return pd.DataFrame({"user": range(split.n_users), "relevant": [r.tolist() for r in relevant],
                         "full_ranks": [r.tolist() for r in ranks]})
