"""LLM evaluation with one prompt pass per user: the greedy answer and the candidate-title scores
both continue from the same KV cache of the prompt.

Per batch of users (prompts of similar length: ``RecDataModule.eval_batches``):

1. the prompts, left-padded, run once through the decoder with a KV cache;
2. ranking: all candidate titles of a user form ONE continuation row after the cached prompt, with a
   block mask (each title sees the prompt and its own earlier tokens, never another title) and
   positions that restart at the prompt length for each title, as in the packed ``shared_prefix``
   layout (napo_lab.models.logprobs); the cache is then cut back to the prompt;
3. generation: greedy decoding from the same cache, one token per step, exactly as
   ``transformers``' ``generate(do_sample=False, num_beams=1)`` does it (same inputs, masks and
   positions; finished rows get the pad token; stop at EOS or ``max_new_tokens``).

Before this, ``eval.protocol=both`` ran every prompt twice (``generate`` and the packed ranking
forward). The title log-probs go through the LM head in chunks of ``HEAD_ROWS`` positions, so the
full-vocabulary logits never exist for a whole batch at once.

The block mask needs an attention implementation that takes a custom 4-D mask (eager, SDPA); with
another (flash-attention: ``forward=prefix_cache``) or ``forward=duplicate`` the titles are scored by
``completion_logps`` in that layout and only generation uses the cache.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from napo_lab.eval.generation import left_pad
from napo_lab.memory import release_memory, trim_heap
from napo_lab.models.logprobs import _as_attention_mask, block_causal, causal_lm, completion_logps, pad_rows
from napo_lab.progress import progress

log = logging.getLogger(__name__)

HEAD_ROWS = 512  # title positions per LM-head chunk: [512, vocab] fp32 logits (~100 MB for a 49k vocabulary)


@dataclass
class PassOutput:
    """Results in input order (``None`` for what was not asked) and where the time went."""

    texts: list[str] | None
    summed: np.ndarray | None
    normed: np.ndarray | None
    seconds: dict[str, float] = field(default_factory=dict)  # prompt / rank / generate
    tokens: dict[str, int] = field(default_factory=dict)  # real and padded prompt tokens
    # Per row, in input order: its prompt tokens, candidate-title tokens scored and answer tokens
    # generated (up to and including EOS); the work the benchmark counts FLOPs from.
    lengths: dict[str, list[int]] = field(default_factory=dict)


def _cache_kwarg(decoder) -> str:
    """transformers 5 calls the KV cache argument ``cache``; 4.x ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _out_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _eos_ids(tokenizer, model) -> list[int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = getattr(getattr(causal_lm(model), "generation_config", None), "eos_token_id", None)
    return [] if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _greedy(decoder, head, cache, kw: str, mask: torch.Tensor, pos: torch.Tensor, last: torch.Tensor,
            max_new_tokens: int, pad_id: int, eos: list[int]) -> torch.Tensor:
    """Greedy tokens [B, <= max_new_tokens] continuing the cached prompts (``last``: [B, 1, H])."""
    bsz, device = mask.shape[0], mask.device
    unfinished = torch.ones(bsz, dtype=torch.bool, device=device)
    eos_t = torch.as_tensor(eos, device=device) if eos else None
    logits = head(last)[:, -1, :].float()
    out = []
    for step in range(int(max_new_tokens)):
        nxt = logits.argmax(-1)
        nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad_id))
        out.append(nxt)
        if eos_t is not None:
            unfinished &= ~torch.isin(nxt, eos_t)
        if not bool(unfinished.any()) or step == int(max_new_tokens) - 1:
            break
        mask = torch.cat([mask, mask.new_ones((bsz, 1))], dim=1)
        pos = pos[:, -1:] + 1
        hidden = decoder(input_ids=nxt.unsqueeze(1), attention_mask=mask, position_ids=pos, use_cache=True,
                         **{kw: cache}).last_hidden_state
        logits = head(hidden[:, -1:, :])[:, -1, :].float()
    return torch.stack(out, 1) if out else torch.zeros((bsz, 0), dtype=torch.long, device=device)


def _rank_from_cache(lm, decoder, head, cache, kw: str, mask: torch.Tensor, last: torch.Tensor,
                     completions: list[list[list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and token counts [B, M] of every row's titles, continuing the cached prompts."""
    device, bsz, width_p = mask.device, mask.shape[0], mask.shape[1]
    p_len = mask.sum(1).tolist()
    rows, seg, positions = [], [], []
    owner, src, target, comp_of = [], [], [], []  # per title token: row, hidden index (-1: prompt's last), token
    n_comp = max(len(c) for c in completions)
    for b, comps in enumerate(completions):
        ids, sg, ps = [], [], []
        for m, comp in enumerate(comps):
            if len(comp) == 0:
                raise ValueError(f"prompt {b} has an empty completion; every completion needs >= 1 token")
            start = len(ids)
            for t, tok in enumerate(comp):
                owner.append(b)
                src.append(-1 if t == 0 else start + t - 1)
                target.append(int(tok))
                comp_of.append(b * n_comp + m)
            ids += list(comp)
            sg += [m] * len(comp)
            ps += list(range(p_len[b], p_len[b] + len(comp)))
        rows.append(ids)
        seg.append(sg)
        positions.append(ps)
    c_ids, c_pos, c_seg = pad_rows(rows, positions, seg, pad_id=pad_id, device=device)
    width = c_ids.shape[1]
    own = block_causal(c_seg)  # each title sees its own earlier tokens (and, below, the cached prompt)
    prompt = mask.bool().unsqueeze(1).expand(bsz, width, width_p)
    allowed = torch.cat([prompt, own], dim=2).unsqueeze(1)  # [B, 1, Q, P + Q]
    hidden = decoder(input_ids=c_ids, attention_mask=_as_attention_mask(allowed, lm, head.weight.dtype),
                     position_ids=c_pos, use_cache=True, **{kw: cache}).last_hidden_state
    owner_t, src_t = torch.as_tensor(owner, device=device), torch.as_tensor(src, device=device)
    picked = hidden[owner_t, src_t.clamp(min=0)]
    first = src_t < 0
    picked[first] = last[owner_t[first], -1]
    targets = torch.as_tensor(target, device=device)
    per_token = torch.empty(len(target), dtype=torch.float32, device=device)
    for s in range(0, len(target), HEAD_ROWS):
        logits = head(picked[s : s + HEAD_ROWS]).float()
        per_token[s : s + HEAD_ROWS] = (logits.gather(-1, targets[s : s + HEAD_ROWS, None]).squeeze(-1)
                                        - torch.logsumexp(logits, dim=-1))
        del logits
    comp_t = torch.as_tensor(comp_of, device=device)
    summed = torch.zeros(bsz * n_comp, dtype=torch.float32, device=device).index_add_(0, comp_t, per_token)
    counts = torch.zeros(bsz * n_comp, dtype=torch.long, device=device).index_add_(
        0, comp_t, torch.ones_like(comp_t))
    return summed.view(bsz, n_comp), counts.view(bsz, n_comp)


def _crop(cache, length: int) -> None:
    """Cut the cache back to its first ``length`` positions (a negative crop works in 4.x and 5.x)."""
    extra = cache.get_seq_length() - int(length)
    if extra > 0:
        cache.crop(-extra)


@torch.no_grad()
def answers_and_scores(model, tokenizer, title_ids, batches: Sequence[dict], n: int, *, generate: bool,
                       rank: bool, max_new_tokens: int = 20, layout: str = "shared_prefix",
                       desc: str = "evaluate") -> PassOutput:
    """Greedy answers and/or title log-likelihoods for evaluation batches (``collate_eval`` dicts with an
    ``index`` list: each row's position in the output, 0..n-1). Summed and length-normalised scores
    are [n, C] float64."""
    was_training = model.training
    model.eval()
    lm = causal_lm(model)
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    device, kw, pad = head.weight.device, _cache_kwarg(decoder), tokenizer.pad_token_id
    eos = _eos_ids(tokenizer, model)
    texts: list[str] | None = [""] * n if generate else None
    summed = normed = None
    seconds = {"prompt": 0.0, "rank": 0.0, "generate": 0.0}
    tokens = {"prompt": 0, "prompt_padded": 0}
    per_row = {"prompt": [0] * n, "titles": [0] * n, "answer": [0] * n}
    try:
        with progress("users") as bar:
            task = bar.add_task(desc, total=n)
            for batch in batches:
                index = list(batch["index"])
                t0 = time.perf_counter()
                ids, mask = left_pad(batch["prompt_ids"], pad, device)
                pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
                shared = generate or layout == "shared_prefix"
                if shared:
                    out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
                    cache, last = _out_cache(out), out.last_hidden_state[:, -1:, :]
                tokens["prompt"] += int(mask.sum())
                tokens["prompt_padded"] += int(mask.numel())
                for i, m in zip(index, mask.sum(1).tolist()):
                    per_row["prompt"][i] = int(m)
                t1 = time.perf_counter()
                seconds["prompt"] += t1 - t0
                if rank:
                    comps = [[title_ids[int(c)] for c in row] for row in batch["candidates"].tolist()]
                    for i, cs in zip(index, comps):
                        per_row["titles"][i] = sum(len(c) for c in cs)
                    if layout == "shared_prefix":
                        logps, lengths = _rank_from_cache(lm, decoder, head, cache, kw, mask, last, comps, pad)
                        _crop(cache, ids.shape[1])
                    else:
                        logps, lengths = completion_logps(model, batch["prompt_ids"], comps, pad, layout)
                    if summed is None:
                        summed = np.zeros((n, logps.shape[1]))
                        normed = np.zeros((n, logps.shape[1]))
                    summed[index] = logps.float().cpu().numpy()
                    normed[index] = (logps / lengths.clamp(min=1)).float().cpu().numpy()
                t2 = time.perf_counter()
                seconds["rank"] += t2 - t1
                if generate:
                    new = _greedy(decoder, head, cache, kw, mask, pos, last, max_new_tokens, pad, eos)
                    for i, text in zip(index, tokenizer.batch_decode(new, skip_special_tokens=True)):
                        texts[i] = text
                    for i, row in zip(index, new.tolist()):
                        ends = [t for t, tok in enumerate(row) if tok in eos]
                        per_row["answer"][i] = ends[0] + 1 if ends else len(row)
                seconds["generate"] += time.perf_counter() - t2
                bar.advance(task, len(index))
                trim_heap()  # each batch's KV cache grew by concatenation: its freed pages go back now
    finally:
        model.train(was_training)
        release_memory()  # the KV caches grew by concatenation: hand the freed heap pages back
    if rank and summed is None:  # no rows
        summed, normed = np.zeros((n, 0)), np.zeros((n, 0))
    log.info("%s: %d users in %.1f s (prompt %.1f s, rank %.1f s, generate %.1f s)", desc, n,
             sum(seconds.values()), seconds["prompt"], seconds["rank"], seconds["generate"])
    return PassOutput(texts, summed, normed, seconds, tokens, per_row)
