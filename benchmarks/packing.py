"""SFT packing (``sft.pack_tokens``), before and after on the same batches: each SFT batch (answer and
history-title loss, as the SFT stage trains) is run once with one prompt per row and once packed into
rows of at most ``pack_tokens`` tokens, interleaved; the padding fraction of the computed rows and the
real (non-padding) tokens per CPU second of forward + backward."""

from __future__ import annotations

import itertools
import time
from typing import Any

from benchmarks.common import Setup


def sft_batches(setup: Setup, batch_size: int, n_batches: int) -> list[dict[str, Any]]:
    """The first SFT batches (answer only, with the history-title positions) of the dataset's training subset."""
    dm = setup.datamodule(0, batch_size, train_limit=setup.cfg.dataset.get("train_limit"), history=True)
    dm.setup("fit")
    return list(itertools.islice(iter(dm.train_dataloader()), n_batches))


def run_packing(setup: Setup, spec: dict[str, Any]) -> dict[str, Any]:
    from napo_lab.models.logprobs import completion_and_prompt_logps, pack_blocks

    batches = sft_batches(setup, int(spec["batch"]), int(spec["batches"]))
    variants = {"one prompt per row (before)": None, f"packed, pack_tokens={spec['pack_tokens']}": int(spec["pack_tokens"])}
    out = {name: {"cpu_s": 0.0, "real": 0, "computed": 0, "rows": 0} for name in variants}
    model, pad = setup.model, setup.tokenizer.pad_token_id
    model.train()
    for i, batch in enumerate(batches):
        blocks = [len(p) + sum(len(c) for c in cs) for p, cs in zip(batch["prompt_ids"], batch["completion_ids"])]
        names = list(variants) if i % 2 == 0 else list(variants)[::-1]
        for name in names:
            rows = pack_blocks(blocks, variants[name])
            model.zero_grad(set_to_none=True)
            t = time.process_time()
            logps, _, hist = completion_and_prompt_logps(model, batch["prompt_ids"], batch["completion_ids"], pad,
                                                         "shared_prefix", batch["history_positions"], variants[name])
            (-(logps[:, 0].sum() + hist.sum())).backward()
            o = out[name]
            o["cpu_s"] += time.process_time() - t
            o["real"] += sum(blocks)
            o["computed"] += len(rows) * max(sum(blocks[j] for j in r) for r in rows)
            o["rows"] += len(rows)
    model.zero_grad(set_to_none=True)
    return {"batches": len(batches), "batch": int(spec["batch"]),
            "variants": {name: {"cpu_s_per_step": o["cpu_s"] / len(batches), "tokens_per_cpu_s": o["real"] / o["cpu_s"],
                                "padding": 1 - o["real"] / o["computed"], "rows_per_step": o["rows"] / len(batches)}
                         for name, o in out.items()}}
