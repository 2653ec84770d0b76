"""The run job of the non-sequential family: ``python -m napo_lab.run model=bprmf|lightgcn
sampler=uniform|triplet_shapley dataset=movielens``.

Data: the dataset's ratings file (``dataset.files.ratings``) split by the rating protocol
(``dataset.ratings_protocol``, napo_lab.data.ratings). Evaluation: every item ranked for every user
with the user's training items removed; the relevant items of a user are its held-out real
positives. Writes ``predictions_<role>.parquet`` (one row per user: the relevant items and their
ranks, see napo_lab.eval.full_ranking) and returns flat metrics ``<role>/full/recall@K``,
``<role>/full/ndcg@K`` plus training and valuation bookkeeping.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from napo_lab.data.ratings import RatingsProtocol, RatingsSplit, load_ratings_split
from napo_lab.eval.full_ranking import per_row_metrics, relevant_ranks
from napo_lab.models.cf.train import train_cf
from napo_lab.models.preferdiff.config import dataclass_from_mapping

log = logging.getLogger(__name__)

FULL_KS = (5, 10, 20)
CF_PREDICTIONS_SCHEMA = pa.schema([
    ("user", pa.int64()), ("relevant", pa.list_(pa.int64())), ("full_ranks", pa.list_(pa.int64())),
    ("top", pa.list_(pa.int64())),
])


def _plain(node: Any) -> Any:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            return OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return node


def ratings_split_for(dataset_cfg: Any, data_dir: str | Path | None) -> RatingsSplit:
    """The rating-protocol split of ``dataset_cfg`` (needs ``files.ratings``)."""
    ds = _plain(dataset_cfg) or {}
    rel = (ds.get("files") or {}).get("ratings")
    if not rel:
        raise ValueError(f"dataset {ds.get('name')!r} has no files.ratings: the rating protocol of the bprmf / "
                         "lightgcn models needs explicit ratings (use dataset=movielens)")
    path = Path(rel) if Path(rel).is_absolute() else Path(data_dir or ".") / rel
    if not path.is_file():
        raise FileNotFoundError(f"ratings file {path} not found; set paths.data_dir (NAPO_LAB_DATA_DIR) to the "
                                "directory holding movielens/ml-100k/")
    protocol = dataclass_from_mapping(RatingsProtocol, ds.get("ratings_protocol") or {})
    return load_ratings_split(path, protocol)


def evaluate_split(model: Any, split: RatingsSplit, role: str, out_dir: Path | None, ks=FULL_KS,
                   top_k: int = 20) -> dict[str, float]:
    """Full-ranking metrics of ``role`` (val | test); with ``out_dir`` also predictions_<role>.parquet."""
    scores = model.scores().float()
    relevant = getattr(split, role)
    ranks = relevant_ranks(scores, relevant, split.train)
    rows = per_row_metrics(ranks, ks)
    valid = np.array([len(r) > 0 for r in relevant])
    metrics = {f"{role}/full/{k}": float(v[valid].mean()) if valid.any() else 0.0 for k, v in rows.items()}
    metrics[f"{role}/full/n"] = float(valid.sum())
    if out_dir is not None:
        masked = scores.clone()
        for u, items in enumerate(split.train):
            masked[u, items] = -float("inf")
        top = masked.topk(min(top_k, masked.shape[1]), dim=1).indices.numpy()
        table = pa.table({"user": np.arange(split.n_users), "relevant": [r.tolist() for r in relevant],
                          "full_ranks": [r.tolist() for r in ranks], "top": top.tolist()},
                         schema=CF_PREDICTIONS_SCHEMA)
        pq.write_table(table, Path(out_dir) / f"predictions_{role}.parquet")
    return metrics


def run_cf(cfg: Any, out_dir: Path | str) -> dict[str, float]:
    """Split, train (``cfg.model``, ``cfg.sampler``), evaluate val and test; write predictions and
    ``train_metrics.json`` (validation curve and every valuation's statistics)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = _plain(cfg.get("paths")) or {}
    split = ratings_split_for(cfg.dataset, paths.get("data_dir"))
    log.info("rating protocol %s: %s", split.fingerprint(), split.counts)
    model_cfg = {k: v for k, v in (_plain(cfg.model) or {}).items() if k not in ("kind", "name", "_target_")}
    model_cfg["seed"] = int(cfg.get("seed", model_cfg.get("seed", 0)))
    model, info = train_cf(split, model_cfg, _plain(cfg.get("sampler")) or {"name": "uniform"})
    metrics: dict[str, float] = {"cf/train_seconds": float(info["train_seconds"]),
                                 "cf/best_epoch": float(info["best_epoch"]),
                                 "cf/epochs_run": float(info["epochs_run"])}
    for role in ("val", "test"):
        metrics.update(evaluate_split(model, split, role, out_dir))
    if info["valuations"]:
        last = info["valuations"][-1]
        metrics["shapley/rounds"] = float(len(info["valuations"]))
        metrics["shapley/seconds"] = float(sum(v["seconds"] for v in info["valuations"]))
        for key in ("variance_ratio", "truncated_share", "share_positive", "mean_value_noisy", "mean_value_real"):
            metrics[f"shapley/{key}"] = float(last[key])
    (out_dir / "train_metrics.json").write_text(json.dumps(
        {"history": info["history"], "valuations": info["valuations"], "split": split.counts,
         "protocol_fingerprint": split.fingerprint()}, indent=2, default=float))
    return metrics
