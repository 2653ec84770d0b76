"""Every candidate's title log-likelihood given the prompt: evaluation by ranking, and the SFT
model's own ranking that self-hard negatives are drawn from.

The prompt runs once per user and its 20 titles share it (the shared-prefix layouts), so ranking
costs about one prompt forward per user, while generation costs a prompt forward plus up to
max_new_tokens decoding steps.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from napo_lab.models.logprobs import completion_logps
from napo_lab.progress import progress

log = logging.getLogger(__name__)


@torch.no_grad()
def title_logliks(model, title_ids, loader, pad_id: int, layout: str = "shared_prefix",
                     desc: str = "rank") -> tuple[np.ndarray, np.ndarray]:
    """Return (summed, length-normalised) log-likelihood matrices [N, C] in loader order."""
    was_training = model.training
    model.eval()
    summed, normed = [], []
    start = time.perf_counter()
    with progress("users") as bar:
        task = bar.add_task(desc, total=len(loader.dataset))
        for batch in loader:
            cands = batch["candidates"].tolist()
            comps = [[title_ids[c] for c in row] for row in cands]
            logps, lengths = completion_logps(model, batch["prompt_ids"], comps, pad_id, layout)
            summed.append(logps.float().cpu().numpy())
            normed.append((logps / lengths.clamp(min=1)).float().cpu().numpy())
            bar.advance(task, len(cands))
    log.info("ranking: %d users in %.1f s", sum(len(s) for s in summed), time.perf_counter() - start)
    model.train(was_training)
    return np.concatenate(summed).astype(np.float64), np.concatenate(normed).astype(np.float64)
