"""DPO4Rec, a small complete pipeline (``experiment=dpo4rec_small``; docs/dpo4rec.md).

    lists (MovieLens, KAR-style) -> round 0: the LLM samples N reasonings per user (cached)
      -> the re-ranker (reward model) is trained with the reasoning -> NDCG@5 of each reasoning on the
         user's train list -> best / worst = a DPO pair -> DPO (napo_lab's DPOLoss, beta 0.01, the
         round's starting adapter as the reference) -> round r: sample again, retrain the re-ranker ...

Evaluation is re-ranking of each user's *test* list (the next n_next interactions after the train
list + unseen items): NDCG@K and MAP@K with bootstrap CIs over users, for the re-ranker without
reasoning, with round-0 reasoning and after every DPO round. It is a different task from the HR@1
candidate selection of the other runs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from napo_lab.cache import CacheEntry, atomic_write_text, canonical, digest
from napo_lab.data.datamodule import collate_train
from napo_lab.data.prompts import wrap_chat
from napo_lab.data.rerank import load_movielens, reasoning_prompt, rerank_lists
from napo_lab.eval.generation import sample_texts
from napo_lab.lit.module import RecLitModule
from napo_lab.losses.dpo import DPOLoss
from napo_lab.metrics.rerank import map_at_k, ndcg_at_k
from napo_lab.metrics.stats import mean_interval, paired_bootstrap
from napo_lab.models.adapters import REFERENCE_ADAPTER, attach_reference, save_adapter
from napo_lab.models.llm import lora_state
from napo_lab.models.reranker import mean_pooled, rerank_scores, train_reranker
from napo_lab.recipe import build
from napo_lab.recipe.keys import model_identity, stage_settings

log = logging.getLogger(__name__)
LISTS_FILE = "dpo4rec_lists.parquet"


def best_worst(rewards: list[float]) -> tuple[int, int] | None:
    """(index of the best, index of the worst) reasoning by reward; None when all are equal (no
    preference). Ties: the first best and the first worst."""
    r = np.asarray(rewards, dtype=np.float64)
    if not len(r) or not np.isfinite(r).all() or r.max() == r.min():
        return None
    return int(np.argmax(r)), int(np.argmin(r))


def adapter_digest(llm) -> str:
    state = lora_state(llm)
    h = torch.cat([state[k].flatten().float() for k in sorted(state)]) if state else torch.zeros(1)
    return digest([float(h.sum()), float(h.abs().sum()), float((h * torch.arange(h.numel())).sum())])


def reasoning(cfg: DictConfig, llm, tokenizer, prompts: list[list[int]], round_: int) -> tuple[list[list[str]], bool]:
    """N sampled reasonings per prompt, cached by (model, adapter weights, prompts, sampling settings)."""
    d = cfg.dpo4rec
    key = {"model": model_identity(cfg), "adapter": adapter_digest(llm), "prompts": digest(prompts),
           "n": int(d.n_samples), "tokens": int(d.max_new_tokens), "temperature": float(d.temperature),
           "seed": int(cfg.seed) * 7 + round_}
    entry = CacheEntry.under(Path(cfg.paths.cache_dir) / "dpo4rec_reasoning", cfg.model.name, key, "reasoning.json")
    if entry.ready:
        return json.loads((entry.path / "reasoning.json").read_text()), True

    def make(tmp: Path) -> None:
        with build.autocast(cfg, llm):
            texts = sample_texts(llm, tokenizer, prompts, int(d.n_samples), int(d.max_new_tokens),
                                 float(d.temperature), key["seed"])
        atomic_write_text(tmp / "key.json", json.dumps(canonical(key), sort_keys=True, default=str))
        atomic_write_text(tmp / "reasoning.json", json.dumps(texts))

    path, reused = entry.get_or_build(make)
    return json.loads((path / "reasoning.json").read_text()), reused


def list_metrics(scores: np.ndarray, items_labels: pd.Series, k: int) -> tuple[np.ndarray, np.ndarray]:
    ndcg = np.array([ndcg_at_k(s, lab, k) for s, lab in zip(scores, items_labels)])
    mapk = np.array([map_at_k(s, lab, k) for s, lab in zip(scores, items_labels)])
    return ndcg, mapk


def cross_fitted_rewards(cfg, lists: pd.DataFrame, n_items: int, emb: np.ndarray, k: int) -> list[list[float]]:
    """NDCG@k of every reasoning of every user on the user's train list, scored by a re-ranker trained on
    the *other* half of the users (2-fold cross-fitting, seeded halves): a re-ranker scoring the lists
    it was fitted on memorises them and gives every reasoning the same (perfect) reward."""
    n = len(lists)
    half = np.zeros(n, dtype=bool)
    half[np.random.default_rng([int(cfg.seed), 4113]).permutation(n)[: n // 2]] = True
    rewards: list[list[float]] = [[] for _ in range(n)]
    for fold in (True, False):
        train = np.flatnonzero(half != fold)
        model = fit_reranker(cfg, lists.iloc[train], n_items, emb[train, 0])
        for u in np.flatnonzero(half == fold):
            m = emb.shape[1]
            scores = rerank_scores(model, [lists["train_items"].iloc[u]] * m, [lists["history"].iloc[u]] * m, emb[u])
            rewards[u] = [ndcg_at_k(sc, lists["train_labels"].iloc[u], k) for sc in scores]
    return rewards


def fit_reranker(cfg, lists: pd.DataFrame, n_items: int, text: np.ndarray | None):
    r = cfg.dpo4rec.reranker
    return train_reranker(n_items, lists["train_items"].tolist(), lists["train_labels"].tolist(),
                          lists["history"].tolist(), text, epochs=int(r.epochs), lr=float(r.lr),
                          seed=int(cfg.seed), dim=int(r.dim))


def dpo_round(cfg: DictConfig, job_dir: Path, llm, tokenizer, prompts, texts, pairs, round_: int) -> dict[str, float]:
    """One DPO pass over (prompt, best, worst); the reference is the adapter the round starts from."""
    import lightning as L
    from torch.utils.data import DataLoader

    start_dir = job_dir / f"adapter_round{round_ - 1}"
    save_adapter(llm, start_dir)
    if REFERENCE_ADAPTER in getattr(llm, "peft_config", {}):
        llm.delete_adapter(REFERENCE_ADAPTER)
    attach_reference(llm, start_dir)
    eos = tokenizer.eos_token_id
    examples = []
    for n, (u, (w, lo)) in enumerate(pairs):
        comp = [tokenizer(texts[u][j], add_special_tokens=False).input_ids + [eos] for j in (w, lo)]
        examples.append({"prompt_ids": prompts[u], "completion_ids": comp, "item_ids": [0, 1], "history": [],
                         "user": int(u), "example_index": n, "history_positions": []})
    settings = stage_settings(cfg, "pref")
    module = RecLitModule(llm, DPOLoss(beta=float(cfg.dpo4rec.beta)), tokenizer.pad_token_id, settings,
                          build.layout(cfg, llm), "pref")
    gen = torch.Generator().manual_seed(int(cfg.seed) * 31 + round_)
    loader = DataLoader(examples, batch_size=int(settings["batch_size"]), shuffle=True, generator=gen,
                        collate_fn=collate_train)
    L.seed_everything(int(cfg.seed) + round_, workers=True, verbose=False)
    trainer = build.trainer(cfg, settings, [], False, False, job_dir)
    module.train()
    with build.activation_checkpointing(llm, settings.get("activation_checkpointing")):
        trainer.fit(module, train_dataloaders=loader)
    llm.set_adapter("default")
    return {f"dpo4rec/round{round_}/pairs": float(len(pairs)), f"dpo4rec/round{round_}/steps": float(trainer.global_step)}


def run(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    d = cfg.dpo4rec
    ratings, titles = load_movielens(cfg.dataset, cfg.paths.data_dir, cfg.paths.cache_dir)
    lists = rerank_lists(ratings, len(titles), canonical(d.lists))
    n_items, k = len(titles), int(d.k)
    llm, tokenizer = build.model(cfg)
    chat = bool(cfg.model.chat_template)
    prompts = [tokenizer(wrap_chat(tokenizer, reasoning_prompt(titles, h, r), chat), add_special_tokens=not chat).input_ids
               for h, r in zip(lists["history"], lists["history_ratings"])]
    metrics: dict[str, float] = {"dpo4rec/users": float(len(lists)),
                                 "dpo4rec/lists_without_relevant_item": float((lists["test_labels"].map(sum) == 0).sum())}
    per_list: dict[str, np.ndarray] = {}

    def evaluate(name: str, text: np.ndarray | None) -> None:
        model = fit_reranker(cfg, lists, n_items, text)
        scores = rerank_scores(model, lists["test_items"].tolist(), lists["history"].tolist(), text)
        per_list[f"{name}/ndcg@{k}"], per_list[f"{name}/map@{k}"] = list_metrics(scores, lists["test_labels"], k)

    evaluate("no_reasoning", None)
    for round_ in range(int(d.rounds) + 1):
        texts, reused = reasoning(cfg, llm, tokenizer, prompts, round_)
        metrics[f"dpo4rec/round{round_}/reasoning_from_cache"] = float(reused)
        emb = mean_pooled(llm, tokenizer, [t for ts in texts for t in ts]).reshape(len(texts), len(texts[0]), -1)
        evaluate(f"round{round_}", emb[:, 0])  # sample 0 is the user's reasoning for the re-ranker
        if round_ == int(d.rounds):
            break
        rewards = cross_fitted_rewards(cfg, lists, n_items, emb, k)
        pairs = [(u, p) for u, r in enumerate(rewards) if (p := best_worst(r)) is not None]
        metrics[f"dpo4rec/round{round_ + 1}/reward_gap"] = float(np.mean([rewards[u][w] - rewards[u][lo]
                                                                           for u, (w, lo) in pairs])) if pairs else math.nan
        if pairs:
            metrics.update(dpo_round(cfg, Path(out_dir), llm, tokenizer, prompts, texts, pairs, round_ + 1))
        else:  # every user's reasonings got equal rewards: nothing to prefer, the policy stays
            log.warning("DPO4Rec round %d: no user has reasonings of different reward; no DPO step", round_ + 1)
            metrics[f"dpo4rec/round{round_ + 1}/pairs"] = 0.0
        pd.DataFrame({"user": lists["user"], "texts": texts}).to_parquet(Path(out_dir) / f"reasoning_round{round_}.parquet")
    metrics.update(summarise(per_list, k))
    table = lists[["user"]].copy()
    for name, values in per_list.items():
        table[name] = values
    table.to_parquet(Path(out_dir) / LISTS_FILE)
    return metrics


def summarise(per_list: dict[str, np.ndarray], k: int) -> dict[str, float]:
    """Mean and 95% bootstrap CI over users of every variant, and each variant's paired difference to
    the re-ranker without reasoning (lists without a relevant item count as zeros, as in KAR)."""
    out: dict[str, float] = {}
    for metric in (f"ndcg@{k}", f"map@{k}"):
        base = per_list[f"no_reasoning/{metric}"]
        keep = np.ones(len(base), dtype=bool)
        for name, values in per_list.items():
            if not name.endswith(metric):
                continue
            ci = mean_interval(values[keep])
            variant = name.rsplit("/", 1)[0]
            out[f"test/dpo4rec/{variant}/{metric}"] = ci.diff
            out[f"test/dpo4rec/{variant}/{metric}_ci_low"], out[f"test/dpo4rec/{variant}/{metric}_ci_high"] = ci.low, ci.high
            if variant != "no_reasoning":
                diff = paired_bootstrap(values[keep], base[keep])
                out[f"test/dpo4rec/{variant}/{metric}_vs_no_reasoning"] = diff.diff
                out[f"test/dpo4rec/{variant}/{metric}_vs_no_reasoning_ci_low"] = diff.low
                out[f"test/dpo4rec/{variant}/{metric}_vs_no_reasoning_ci_high"] = diff.high
    return out
