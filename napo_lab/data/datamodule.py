"""The LightningDataModule: prepared examples -> prompts + completions -> batches.

A training batch carries each prompt once and its 1+K completions (positive first); see
docs/ARCHITECTURE.md section 2. Evaluation batches carry the prompt and its candidate list.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from napo_lab.data.prompts import rated_templates, render_spans, templates, wrap_chat
from napo_lab.data.samplers import EpochIndexSampler, NegativeSampler, example_rng
from napo_lab.data.sampling import sdpo_candidates, seeded_candidates

log = logging.getLogger(__name__)


def limit_rows(df, limit: int | None, seed: int):
    """A seeded subset of at most ``limit`` rows, kept in the original order (None = all)."""
    if limit is None or int(limit) >= len(df):
        return df.reset_index(drop=True)
    rng = np.random.default_rng([int(seed), 7919])
    keep = np.sort(rng.choice(len(df), size=int(limit), replace=False))
    return df.iloc[keep].reset_index(drop=True)


def eval_rows(prepared, dataset_cfg: Mapping[str, Any], role: str):
    """The rows evaluated as ``role`` (val / test): ``dataset.<role>_split``, limited by
    ``dataset.<role>_limit`` to a subset drawn with ``dataset.seed``. The same rows for LLMs and
    sequential models, and for every training seed, so methods and seeds can be compared user by user."""
    return limit_rows(prepared.split(dataset_cfg[f"{role}_split"]), dataset_cfg.get(f"{role}_limit"),
                      int(dataset_cfg.get("seed", 0)))


class PromptBuilder:
    """Turns item ids into prompt token ids, and every title into the tokens of an answer.

    A prompt and its answer are tokenised as the model reads them together. Without a chat template
    the prompt text ends with "Answer: " (S-DPO's wording); its tokens stop at "Answer:" and a title
    continues them as " <title>", so "...Answer: Lady Gaga" has the tokens one text would have
    (tokenising the prompt with its trailing space and the title alone gives a stray space token and
    a title split as no text ever splits it). With a chat template the title opens the assistant turn.
    The answer is the title as the prompt shows it (cut to ``max_title_chars``), then EOS.
    """

    def __init__(self, tokenizer, titles: Sequence[str], domain: str, use_chat_template: bool,
                 max_title_chars: int = 80):
        self.tokenizer, self.titles, self.chat = tokenizer, list(titles), bool(use_chat_template)
        self.wrapped = self.chat and bool(getattr(tokenizer, "chat_template", None))
        self.templates = templates(domain)
        self.rated = rated_templates(domain)  # RecPO's history with ratings (rows with history_ratings)
        self.max_title_chars = int(max_title_chars)
        self.title_ids = self._answers([self.short(i) for i in range(len(self.titles))])

    def _answers(self, titles: Sequence[str]) -> list[list[int]]:
        """Token ids of each title as the continuation of a prompt's last characters, + EOS."""
        sep = "" if self.wrapped else " "
        anchor = wrap_chat(self.tokenizer, "Answer:", self.chat)
        tok = functools.partial(self.tokenizer, add_special_tokens=False)
        base = tok(anchor).input_ids
        joint = tok([anchor + sep + t for t in titles]).input_ids if titles else []
        alone = tok([sep + t for t in titles]).input_ids if titles else []
        eos = self.tokenizer.eos_token_id
        return [(j[len(base):] if j[:len(base)] == base and len(j) > len(base) else a) + [eos]
                for j, a in zip(joint, alone)]

    def short(self, item: int) -> str:
        title = self.titles[int(item)]
        return title if len(title) <= self.max_title_chars else title[: self.max_title_chars]

    def text(self, history: Sequence[int], candidates: Sequence[int], template: int = 0,
             ratings: Sequence[int] | None = None) -> str:
        return self._render(history, candidates, template, ratings)[0]

    def _render(self, history, candidates, template: int, ratings=None) -> tuple[str, str, list[tuple[int, int]]]:
        tpl = (self.templates if ratings is None else self.rated)[template]
        body, spans = render_spans(tpl, [self.short(h) for h in history], [self.short(c) for c in candidates],
                                   ratings)
        return wrap_chat(self.tokenizer, body, self.chat), body, spans

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(self._tokenised_part(text), add_special_tokens=not self.chat).input_ids

    def _tokenised_part(self, text: str) -> str:
        return text if self.wrapped else text.rstrip(" ")

    def encode(self, history: Sequence[int], candidates: Sequence[int], template: int = 0,
               history_targets: bool = False, ratings: Sequence[int] | None = None
               ) -> tuple[str, list[int], list[int]]:
        """(prompt text, prompt token ids, positions of the history-title tokens in those ids).

        The positions (only computed with ``history_targets``) let the SFT stage train on the history
        as a sequence too (``sft.history_weight``): every history title but the first is a next item
        of the same user, i.e. more examples of the very thing the answer teaches."""
        text, body, spans = self._render(history, candidates, template, ratings)
        if not history_targets:
            return text, self.ids(text), []
        shift = text.find(body.rstrip())
        spans = [(a + shift, b + shift) for a, b in spans]
        try:
            enc = self.tokenizer(self._tokenised_part(text), add_special_tokens=not self.chat,
                                 return_offsets_mapping=True)
        except NotImplementedError as err:  # slow tokenizers have no offsets
            raise ValueError("sft.history_weight > 0 needs a fast tokenizer (character offsets); "
                             "set sft.history_weight=0 for this model") from err
        positions = [i for i, (a, b) in enumerate(enc["offset_mapping"])
                     if b > a and any(a < end and b > start for start, end in spans)]
        return text, list(enc["input_ids"]), positions


class TrainDataset(Dataset):
    """Indexed by (epoch, example); everything random is drawn from (seed, epoch, example)."""

    def __init__(self, rows, builder: PromptBuilder, sampler: NegativeSampler, n_items: int,
                 n_candidates: int, seed: int, random_template: bool = True, candidate_sampler: str = "sdpo",
                 candidate_seed: int = 0, history_targets: bool = False):
        self.rows, self.builder, self.sampler = rows, builder, sampler
        self.history_targets = bool(history_targets)
        self.candidate_sampler, self.candidate_seed = candidate_sampler, int(candidate_seed)
        self.n_items, self.n_candidates, self.seed = n_items, n_candidates, seed
        self.random_template = random_template
        self.has_candidates = "candidates" in rows.columns

    def __len__(self) -> int:
        return len(self.rows)

    def candidates(self, i: int) -> list[int]:
        row = self.rows.iloc[i]
        if self.has_candidates:
            return [int(c) for c in row["candidates"]]
        history, target = list(row["history"]), int(row["target"])
        if self.candidate_sampler == "sdpo":
            return sdpo_candidates(history, target, self.n_items, self.n_candidates)
        return seeded_candidates(history, target, self.n_items, self.n_candidates, self.candidate_seed,
                                 int(row["user"]))

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        row = self.rows.iloc[i]
        history, target = [int(h) for h in row["history"]], int(row["target"])
        cands = self.candidates(i)
        tpl = 0
        if self.random_template:
            tpl = int(example_rng(self.seed + 1, epoch, i).integers(len(self.builder.templates)))
        rated = row["candidate_rated"] if "candidate_rated" in self.rows.columns else None
        negs = self.sampler.sample(i, epoch, history, target, cands, rated)
        items = [target] + negs
        _, prompt_ids, history_positions = self.builder.encode(history, cands, tpl, self.history_targets,
                                                               _ratings(row))
        extra = {}
        if "candidate_scores" in self.rows.columns:  # RecPO: the score of each completion's item
            score = dict(zip((int(c) for c in cands), (float(x) for x in row["candidate_scores"])))
            extra["pref_scores"] = [score.get(x, float("nan")) for x in items]
        return {**extra,
            "prompt_ids": prompt_ids,
            "history_positions": history_positions,
            "completion_ids": [self.builder.title_ids[x] for x in items],
            "item_ids": items,
            "history": history,
            "user": int(row["user"]),
            "example_index": i,
            "epoch": int(epoch),  # batch-level negative samplers seed their draw with it
        }


class EvalDataset(Dataset):
    """Val/test rows with their frozen candidates and the fixed evaluation template."""

    def __init__(self, rows, builder: PromptBuilder):
        self.rows, self.builder = rows, builder

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows.iloc[i]
        history, cands = [int(h) for h in row["history"]], [int(c) for c in row["candidates"]]
        text = self.builder.text(history, cands, 0, _ratings(row))
        return {"prompt_ids": self.builder.ids(text), "prompt_text": text, "candidates": cands,
                "target": int(row["target"]), "history": history, "user": int(row["user"]),
                "example_index": i}


def _ratings(row) -> list[int] | None:
    """The history's ratings when the row has them (RecPO's data), else None (the plain prompt)."""
    return [int(r) for r in row["history_ratings"]] if "history_ratings" in row.index else None


def _history_tensor(histories: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    out = torch.full((len(histories), width), -1, dtype=torch.long)
    for b, h in enumerate(histories):
        h = list(h)[-width:]
        out[b, : len(h)] = torch.as_tensor(h, dtype=torch.long)
    return out


def collate_train(examples: list[dict[str, Any]], max_history: int = 10) -> dict[str, Any]:
    width = max(len(e["item_ids"]) for e in examples)
    item_ids = torch.full((len(examples), width), -1, dtype=torch.long)
    for b, e in enumerate(examples):
        item_ids[b, : len(e["item_ids"])] = torch.as_tensor(e["item_ids"])
    extra = {}
    if all("pref_scores" in e for e in examples):
        scores = torch.full((len(examples), width), float("nan"), dtype=torch.float32)
        for b, e in enumerate(examples):
            scores[b, : len(e["pref_scores"])] = torch.as_tensor(e["pref_scores"], dtype=torch.float32)
        extra["pref_scores"] = scores
    return {
        **extra,
        "prompt_ids": [e["prompt_ids"] for e in examples],
        "completion_ids": [e["completion_ids"] for e in examples],
        "item_ids": item_ids,
        "mask": item_ids >= 0,
        "history_positions": [e.get("history_positions", []) for e in examples],
        "history": _history_tensor([e["history"] for e in examples], max_history),
        "user": torch.as_tensor([e["user"] for e in examples]),
        "example_index": torch.as_tensor([e["example_index"] for e in examples]),
    }


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of ``batch_size``, shortest first (a stable sort, so equal lengths keep their
    order and all-equal lengths give the plain order): a batch of similar lengths pads little."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    step = max(1, int(batch_size))
    return [order[i : i + step].tolist() for i in range(0, len(order), step)]


def collate_eval(examples: list[dict[str, Any]], max_history: int = 10) -> dict[str, Any]:
    return {
        "prompt_ids": [e["prompt_ids"] for e in examples],
        "prompt_text": [e["prompt_text"] for e in examples],
        "candidates": torch.as_tensor([e["candidates"] for e in examples]),
        "target": torch.as_tensor([e["target"] for e in examples]),
        "history": _history_tensor([e["history"] for e in examples], max_history),
        "user": torch.as_tensor([e["user"] for e in examples]),
        "example_index": torch.as_tensor([e["example_index"] for e in examples]),
    }


class RecDataModule(L.LightningDataModule):
    """Serves one prepared dataset to a training stage and to evaluation."""

    def __init__(self, prepared, tokenizer, dataset_cfg: Mapping[str, Any], num_negatives: int,
                 negatives: Mapping[str, Any] | None, batch_size: int, eval_batch_size: int,
                 num_workers: int = 0, seed: int = 0, use_chat_template: bool = True,
                 history_targets: bool = False):
        super().__init__()
        self.prepared, self.cfg, self.seed = prepared, dataset_cfg, int(seed)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers = int(num_workers)
        self.max_history = int(dataset_cfg["max_history"])
        self.builder = PromptBuilder(tokenizer, prepared.titles, dataset_cfg.get("domain") or prepared.domain,
                                     use_chat_template, int(dataset_cfg["max_title_chars"]))
        neg = dict(negatives or {})
        counts = prepared.items["train_count"].to_numpy()
        self.negative_sampler = NegativeSampler(neg.get("strategy", "in_prompt"), int(num_negatives),
                                                prepared.n_items, counts, neg.get("weights"), self.seed)
        self.train_rows = limit_rows(prepared.split("train"), dataset_cfg.get("train_limit"), self.seed)
        self.train_dataset = TrainDataset(self.train_rows, self.builder, self.negative_sampler,
                                          prepared.n_items, int(dataset_cfg["n_candidates"]),
                                          self.seed, bool(dataset_cfg["random_template"]),
                                          dataset_cfg["sampler"], int(dataset_cfg["seed"]), history_targets)
        self.index_sampler = EpochIndexSampler(len(self.train_dataset), self.seed, shuffle=True)
        # napo_lab.data.batch_negatives.BatchNegatives: fills the negatives when a batch is collated
        # (the neg_sampler group: in-batch / adaptive samplers need the whole batch). Then the
        # per-example sampler above must draw none (num_negatives=0).
        self.batch_negatives = None

    def eval_dataset(self, role: str) -> EvalDataset:
        """role 'val' or 'test' -> the configured split, limited as configured."""
        return EvalDataset(eval_rows(self.prepared, self.cfg, role), self.builder)

    def loader(self, rows) -> DataLoader:
        """Evaluation batches over any evaluation rows (user, history, target, candidates)."""
        return self._loader(EvalDataset(rows, self.builder), collate_eval, batch_size=self.eval_batch_size,
                            shuffle=False)

    def eval_batches(self, rows, by_length: bool = True):
        """Evaluation batches (``collate_eval`` dicts of ``eval_batch_size`` rows) over any evaluation rows,
        users of similar prompt length together (``by_length``; else in row order, as ``loader``). Each
        batch's ``index`` lists its rows' positions in ``rows``. Every prompt is built once, up front."""
        dataset = EvalDataset(rows, self.builder)
        examples = [dataset[i] for i in range(len(dataset))]
        lengths = [len(e["prompt_ids"]) if by_length else 0 for e in examples]
        for index in length_batches(lengths, self.eval_batch_size):
            batch = collate_eval([examples[i] for i in index], self.max_history)
            batch["index"] = index
            yield batch

    def _loader(self, dataset, collate, **kw) -> DataLoader:
        return DataLoader(dataset, collate_fn=functools.partial(collate, max_history=self.max_history),
                          num_workers=self.num_workers, persistent_workers=False, **kw)

    def train_dataloader(self) -> DataLoader:
        collate = collate_train if self.batch_negatives is None else self.batch_negatives.collate(collate_train)
        return self._loader(self.train_dataset, collate, batch_size=self.batch_size,
                            sampler=self.index_sampler, drop_last=False)

    def eval_dataloader(self, role: str) -> DataLoader:
        return self._loader(self.eval_dataset(role), collate_eval, batch_size=self.eval_batch_size,
                            shuffle=False)
