"""The recipe: one run, top to bottom.

    validate the config -> prepared data -> model + LoRA -> loss -> stages -> adapter -> evaluation

It builds every part from its config group (napo_lab.recipe.build) and asks the loss what it needs
(``needs_reference``, ``needs_sequential_model``), so nothing unneeded is built or computed.

Stages. ``loss.stage: sft`` trains the SFT adapter (plain SFT shares the SFT-adapter cache both
ways). ``loss.stage: pref`` starts from the cached SFT adapter (trained first when missing), then
trains the preference objective. Each stage's epochs / max_steps come from ``sft.*`` / ``pref.*``;
where those are null, from ``trainer.max_epochs`` / ``trainer.max_steps``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omegaconf import DictConfig

from napo_lab.eval import LLMPredictor, SeqRecPredictor
from napo_lab.lit.loggers import finish_wandb, publish
from napo_lab.losses.sft import SFTLoss
from napo_lab.models.adapters import attach_reference, describe_adapter, save_adapter
from napo_lab.recipe import build
from napo_lab.recipe.stages import Job, fit_stage, sft_adapter
from napo_lab.recipe.validate import validate
from napo_lab.rundir import ADAPTER, PREF, SFT, TRAIN_METRICS

log = logging.getLogger(__name__)


def train_and_evaluate(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    """The whole job; returns flat metrics (run.py writes them to metrics.json)."""
    validate(cfg)  # every problem at once, before anything loads
    if cfg.get("dpo4rec") is not None:  # its own pipeline: reasoning, list re-ranker, DPO rounds
        from napo_lab.recipe.dpo4rec import run

        return run(cfg, Path(out_dir))
    if cfg.model.kind == "cf":  # the non-sequential family reads ratings, not the prepared sequences
        from napo_lab.recipe.cf_job import cf_model_job

        return cf_model_job(cfg, out_dir)
    prepared = build.data(cfg)
    if cfg.model.kind == "seqrec":
        return sequential_model_job(cfg, prepared, out_dir)
    objective = build.loss(cfg)
    llm, tokenizer = build.model(cfg)
    job = Job(cfg, prepared, llm, tokenizer, Path(out_dir), loggers=build.loggers(cfg))
    try:
        metrics: dict[str, float] = {}
        module = None
        if cfg.loss.stage == SFT and type(objective) is SFTLoss:
            # Plain SFT is the SFT stage every preference run starts from: share its cache both ways.
            _, reused = sft_adapter(job)
            metrics["sft/reused_cache"] = float(reused)
        elif cfg.loss.stage == SFT:  # another objective on the SFT stage (no reference, no negatives)
            module = fit_stage(job, SFT, objective)
        else:
            sft_path, reused = sft_adapter(job)
            metrics["sft/reused_cache"] = float(reused)
            ref_cache = None
            if objective.needs_reference:  # the frozen SFT adapter, not the base model
                attach_reference(llm, sft_path)
                ref_cache = build.reference_cache(cfg, sft_path, prepared)
            seqrec = build.sequential_model(cfg, prepared) if build.needs_sequential_model(cfg, objective) else None
            # Hard-negative rankers see the SFT model, before preference training moves it.
            providers = build.negative_providers(cfg, llm, tokenizer, seqrec)
            module = fit_stage(job, PREF, objective, providers=providers, ref_cache=ref_cache,
                               seqrec=seqrec if objective.needs_sequential_model else None,
                               negatives_scorer=seqrec if build.sampler_asks_seqrec(cfg) else None)
        metrics["train/seconds"] = float(module.fit_seconds) if module is not None else job.history.seconds
        if build.global_rank() != 0:  # DDP: rank 0 alone saves, evaluates and logs
            return metrics
        job.history.write(job.out_dir / TRAIN_METRICS)
        save_adapter(llm, job.out_dir / ADAPTER)
        metrics.update(evaluate_llm(cfg, prepared, llm, tokenizer, job.out_dir))
        if cfg.eval.references:  # chance, zero-shot and the sequential model on the same rows
            from napo_lab.recipe.references import references

            metrics.update(references(cfg, prepared, llm, tokenizer, job.out_dir))
        describe_adapter(job.out_dir / ADAPTER, run_config(cfg), metrics)
        publish(job.loggers, {k: v for k, v in metrics.items() if math.isfinite(v)}, job.out_dir, job.out_dir / ADAPTER)
        return metrics
    finally:
        finish_wandb()  # the next job of a multirun starts a fresh W&B run with its own settings


def run_config(cfg: DictConfig) -> dict:
    """The resolved config without secrets (what travels with an adapter)."""
    from omegaconf import OmegaConf

    from napo_lab.lit.loggers import redact

    return redact(OmegaConf.to_container(cfg, resolve=True))


def evaluate_llm(cfg: DictConfig, prepared, llm, tokenizer, out_dir: Path | None) -> dict[str, float]:
    """Generation and/or ranking on every role of ``eval.splits`` (predictions_<role>.parquet)."""
    predictor = LLMPredictor(llm, tokenizer, build.datamodule(cfg, prepared, tokenizer), cfg.eval.protocol,
                             build.layout(cfg, llm), cfg.eval.max_new_tokens)
    with build.autocast(cfg, llm):
        return build.evaluator(cfg, prepared).evaluate(predictor, out_dir=out_dir)


def evaluate_only(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    """``python -m napo_lab.evaluate``: a saved adapter (``adapter=<dir>``) or the untrained model."""
    validate(cfg)
    if cfg.model.kind != "llm":
        raise ValueError("napo_lab.evaluate evaluates LLM adapters; sequential models: python -m napo_lab.run model=...")
    prepared = build.data(cfg)
    llm, tokenizer = build.model(cfg, adapter=cfg.adapter or None)  # PeftModel.from_pretrained for a saved adapter
    if cfg.adapter:
        log.info("evaluating adapter %s", cfg.adapter)
    return evaluate_llm(cfg, prepared, llm, tokenizer, out_dir)


def sequential_model_job(cfg: DictConfig, prepared, out_dir: Path) -> dict[str, float]:
    """``model=sasrec|gru4rec|caser|preferdiff`` (with a ``neg_sampler``, trained on its negatives): train
    (or load) it, then the same evaluation as an LLM run, plus the full-catalogue metrics from the same scores."""
    seqrec = build.sequential_model(cfg, prepared, build.with_sampler(cfg))
    info = seqrec.train_info
    metrics = {"seqrec/train_seconds": float(info.get("train_seconds", 0.0)),
               "seqrec/best_epoch": float(info.get("best_epoch", -1)),
               "seqrec/from_cache": float(bool(info.get("from_cache", False)))}
    predictor = SeqRecPredictor(seqrec, mask_history=bool(cfg.eval.get("mask_history", False)))
    metrics.update(build.evaluator(cfg, prepared).evaluate(predictor, out_dir=out_dir))
    loggers = build.loggers(cfg)
    try:
        publish(loggers, metrics)
    finally:
        finish_wandb()
    return metrics
