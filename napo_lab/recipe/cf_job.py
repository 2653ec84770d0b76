"""The non-sequential family's job (``model=bprmf|lightgcn sampler=...``), kept out of recipe.py so the
recipe stays readable: it reads ratings, not the prepared sequences."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from napo_lab.lit.loggers import finish_wandb, publish
from napo_lab.recipe import build

log = logging.getLogger(__name__)


def cf_model_job(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    """``model=bprmf|lightgcn sampler=...``: the rating protocol, BPR training with the chosen triplet
    sampler, then full-ranking evaluation of every role of ``eval.splits`` through the evaluator's
    table (``predictions_<role>.parquet``); ``train_metrics.json`` holds the validation curve and the
    statistics of every Triplet Shapley valuation."""
    from napo_lab.eval import evaluate_full_ranking_table
    from napo_lab.models.cf import train_cf
    from napo_lab.models.cf.runner import predictions_table, ratings_split_for

    out_dir = Path(out_dir)
    split = ratings_split_for(cfg.dataset, cfg.paths.data_dir)
    log.info("rating protocol %s: %s", split.fingerprint(), split.counts)
    model, info = train_cf(split, build.make(cfg.model), build.make(cfg.sampler))
    metrics: dict[str, float] = {"cf/train_seconds": float(info["train_seconds"]),
                                 "cf/best_epoch": float(info["best_epoch"]), "cf/epochs_run": float(info["epochs_run"])}
    for role in cfg.eval.splits:
        metrics.update(evaluate_full_ranking_table(predictions_table(model, split, role), role, out_dir,
                                                   tuple(cfg.eval.full_ks)))
    if info["valuations"]:
        metrics["shapley/rounds"] = float(len(info["valuations"]))
        metrics["shapley/seconds"] = float(sum(v["seconds"] for v in info["valuations"]))
        for key in ("variance_ratio", "truncated_share", "share_positive", "mean_value_noisy", "mean_value_real"):
            metrics[f"shapley/{key}"] = float(np.mean([v[key] for v in info["valuations"]]))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train_metrics.json").write_text(json.dumps(
        {"history": info["history"], "valuations": info["valuations"], "split": split.counts,
         "protocol_fingerprint": split.fingerprint(), "config": info["config"], "sampler": info["sampler"]},
        indent=2, default=float))
    loggers = build.loggers(cfg)
    try:
        publish(loggers, metrics, out_dir)
    finally:
        finish_wandb()
    return metrics
