"""Entry point for ``cfg.model.kind == "seqrec"`` runs: train (or load) a conventional sequential
recommender and evaluate it on the same 20-candidate lists as the LLMs.

Metric keys: ``<role>/rank/<metric>`` (role = "val" | "test"; metrics from
``napo_lab.eval.metrics.ranking_metrics``: hr@1, hr@5, hr@10, ndcg@5, ndcg@10, mrr; sampled metrics
over 20 candidates), plus ``<role>/hr@1`` and ``<role>/valid_ratio``. A conventional model always
returns one of the candidates, so its top-1 is always a *valid* answer: ``<role>/hr@1`` equals the
ranking HR@1 and ``valid_ratio`` is 1.0; that is how a SASRec row fills the generation columns
(S-DPO's HR@1 = hits / all) of the paper tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from napo_lab.models.seqrec.cache import load_or_train_seqrec
from napo_lab.models.seqrec.config import with_neg_sampler
from napo_lab.models.seqrec.train import evaluate_split

PREDICTION_SCHEMA = pa.schema(
    [
        ("user", pa.int64()),
        ("target", pa.int64()),
        ("candidates", pa.list_(pa.int64())),
        ("scores", pa.list_(pa.float64())),
        ("generated", pa.string()),
        ("matched", pa.int64()),
    ]
)


def _select(cfg: Any, path: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, path, default=default)
    return default if value is None else value


def write_predictions(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """predictions_<split>.parquet: one row per example; ``matched`` = top-scored candidate id (ties
    broken like the metrics: the target loses a tie, so ``matched == target`` iff HR@1 counts a hit)."""
    from napo_lab.eval.metrics import topk_items

    scores, cands = arrays["scores"], arrays["candidates"]
    top = topk_items(scores, cands, 1, arrays["target_index"])[:, 0] if len(cands) else np.zeros(0, np.int64)
    table = pa.table(
        {
            "user": arrays["user"],
            "target": arrays["target"],
            "candidates": list(cands),
            "scores": list(scores),
            "generated": [""] * len(cands),
            "matched": top.astype(np.int64),
        },
        schema=PREDICTION_SCHEMA,
    )
    pq.write_table(table, path)


def run_seqrec(cfg: Any, prepared: Any, out_dir: Path | str, logger: Any = None) -> dict[str, float]:
    """Train or load ``cfg.model`` on ``prepared``, evaluate on ``cfg.dataset.val_split`` and
    ``cfg.dataset.test_split`` (default: the manifest's defaults), write predictions_<split>.parquet in
    ``out_dir`` and return flat metrics. The cache lives in ``cfg.model.cache_dir``, else
    ``cfg.paths.cache_dir``, else ``<out_dir>/cache``. ``logger`` (a Lightning logger) receives the
    training curves (``seqrec/*``); logging the returned metrics is left to the caller."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = _select(cfg, "model.cache_dir") or _select(cfg, "paths.cache_dir") or out_dir / "cache"
    model_cfg = with_neg_sampler(cfg.model, _select(cfg, "neg_sampler"))
    model = load_or_train_seqrec(prepared, model_cfg, Path(cache_dir), freeze=True, logger=logger)
    full = FullCatalogue(prepared)
    info = model.train_info
    metrics: dict[str, float] = {
        "seqrec/train_seconds": float(info.get("train_seconds", 0.0)),
        "seqrec/best_epoch": float(info.get("best_epoch", -1)),
        "seqrec/from_cache": float(bool(info.get("from_cache", False))),
    }
    roles = {
        "val": _select(cfg, "dataset.val_split", prepared.manifest.get("default_val_split", "val")),
        "test": _select(cfg, "dataset.test_split", prepared.manifest.get("default_test_split", "test")),
    }
    for role, split in roles.items():
        arrays, split_metrics = evaluate_split(model, prepared.split(split))
        write_predictions(out_dir / f"predictions_{split}.parquet", arrays)
        metrics |= {f"{role}/rank/{k}": v for k, v in split_metrics.items()}
        metrics[f"{role}/hr@1"] = split_metrics["hr@1"]
        metrics[f"{role}/valid_ratio"] = 1.0
        metrics |= {f"{role}/full/{k}": v for k, v in full.metrics(model, arrays).items()}
    metrics |= {f"volume_cohorts/{k}": float(v) for k, v in full.sizes.items()}
    return metrics


class FullCatalogue:
    """Full-catalogue HR@10 / NDCG@10 and interaction-volume cohorts (napo_lab.eval.volume)."""

    def __init__(self, prepared: Any, k: int = 10):
        from napo_lab.data.negatives import UserItems
        from napo_lab.eval.volume import cohort_sizes, volume_cohorts

        freq = UserItems.from_rows(prepared.split("train"), prepared.n_items).frequency()
        self.cohorts, self.k = volume_cohorts(freq), int(k)
        self.sizes = cohort_sizes(self.cohorts, freq)

    def metrics(self, model: Any, arrays: dict[str, np.ndarray]) -> dict[str, float]:
        from napo_lab.eval.volume import full_catalogue_metrics, full_catalogue_ranks

        ranks = full_catalogue_ranks(model.scores, arrays["history"], arrays["target"])
        return full_catalogue_metrics(ranks, arrays["target"], self.cohorts, self.k)
