"""Evaluation by generation (paper parity): greedy decoding, then candidate matching."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from napo_lab.progress import progress

log = logging.getLogger(__name__)


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
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
            ids, mask = _left_pad(batch["prompt_ids"], pad, device)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=int(max_new_tokens),
                                 do_sample=False, num_beams=1, pad_token_id=pad,
                                 eos_token_id=tokenizer.eos_token_id, use_cache=True)
            texts += tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
            bar.advance(task, len(batch["prompt_ids"]))
    log.info("generation: %d users in %.1f s", len(texts), time.perf_counter() - start)
    model.train(was_training)
    return texts
