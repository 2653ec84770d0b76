"""Evaluation by generation (paper parity): greedy decoding, then candidate matching."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from napo_lab.progress import progress

log = logging.getLogger(__name__)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts padded on the left (the last token of every row at the same column) and their mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.as_tensor(list(s))
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate_answers(model, tokenizer, loader, max_new_tokens: int = 20, desc: str = "generate") -> list[str]:
    """Greedy answers for every prompt of an evaluation loader, in loader order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    texts: list[str] = []
    start = time.perf_counter()
    with progress("users") as bar:
        task = bar.add_task(desc, total=len(loader.dataset))
        for batch in loader:
            ids, mask = left_pad(batch["prompt_ids"], pad, device)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=int(max_new_tokens),
                                 do_sample=False, num_beams=1, pad_token_id=pad,
                                 eos_token_id=tokenizer.eos_token_id, use_cache=True)
            texts += tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
            bar.advance(task, len(batch["prompt_ids"]))
    log.info("generation: %d users in %.1f s", len(texts), time.perf_counter() - start)
    model.train(was_training)
    return texts


@torch.no_grad()
def sample_texts(model, tokenizer, prompts: Sequence[Sequence[int]], n: int, max_new_tokens: int,
                 temperature: float = 1.0, seed: int = 0) -> list[list[str]]:
    """``n`` sampled continuations (temperature sampling, top-k off) of every prompt, one prompt at a
    time with a per-prompt seed (``seed``, prompt index), so the texts do not depend on batching."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[str]] = []
    start = time.perf_counter()
    with progress("prompts") as bar:
        task = bar.add_task("sample", total=len(prompts))
        for i, prompt in enumerate(prompts):
            torch.manual_seed(int(seed) * 1_000_003 + i)
            ids = torch.as_tensor([list(prompt)], dtype=torch.long, device=device)
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 temperature=float(temperature), top_k=0, top_p=1.0, num_return_sequences=int(n),
                                 max_new_tokens=int(max_new_tokens), pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, use_cache=True)
            out.append([t.strip() for t in tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)])
            bar.advance(task, 1)
    log.info("sampling: %d prompts x %d in %.1f s", len(prompts), n, time.perf_counter() - start)
    model.train(was_training)
    return out
