"""Packing (``<stage>.pack_tokens``): several prompts' blocks share one row of the shared-prefix layout,
each attending only to itself with positions restarting at 0. The rows are chosen by first-fit
decreasing (checked by hand), and packed scores, prompt (history) scores and LoRA gradients equal the
one-prompt-per-row layout in fp32."""

from __future__ import annotations

import pytest
import torch

from napo_lab.models.logprobs import causal_lm, completion_and_prompt_logps, pack_blocks

TOL = 1e-5


def test_pack_blocks_first_fit_decreasing_by_hand():
    # lengths 5, 9, 3, 7, 2 into rows of 10: 9 -> row0 (1 left), 7 -> row1 (3 left), 5 -> row2 (5 left),
    # 3 -> row1 (0 left), 2 -> row2 (3 left); each row lists its blocks in input order
    assert pack_blocks([5, 9, 3, 7, 2], 10) == [[1], [2, 3], [0, 4]]
    assert pack_blocks([5, 9, 3], None) == [[0], [1], [2]]  # off: one block per row
    assert pack_blocks([5, 12, 3], 10) == [[1], [0, 2]]  # a block longer than the budget gets a row of its own
    assert pack_blocks([4, 4, 4], 100) == [[0, 1, 2]]


def _score(model, tok, prompts, completions, targets, pack_tokens):
    model.zero_grad(set_to_none=True)
    logps, lengths, hist = completion_and_prompt_logps(model, prompts, completions, tok.pad_token_id,
                                                       "shared_prefix", targets, pack_tokens=pack_tokens)
    weights = torch.randn(logps.shape, generator=torch.Generator().manual_seed(2))
    ((logps * weights).sum() + 0.5 * hist.sum()).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return logps.detach(), lengths, hist.detach(), grads


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_equal_one_prompt_per_row(tiny, attn):
    model, tok = tiny
    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, len(tok), (n,), generator=g).tolist()

    prompts = [ids(7), ids(23), ids(13), ids(4)]
    completions = [[ids(3), ids(5)], [ids(2)], [ids(6), ids(2), ids(3)], [ids(1)]]
    targets = [[1, 3, 6], [2, 22], [5, 12], [3]]  # history-title positions inside each prompt
    config = causal_lm(model).config
    before = config._attn_implementation
    config._attn_implementation = attn
    try:
        one = _score(model, tok, prompts, completions, targets, None)
        packed = _score(model, tok, prompts, completions, targets, 40)
    finally:
        config._attn_implementation = before
    assert pack_blocks([15, 25, 24, 5], 40) == [[0, 1], [2, 3]]  # the blocks above: 2 rows, not 4
    assert torch.equal(one[1], packed[1])
    assert torch.allclose(one[0], packed[0], atol=TOL, rtol=0)
    assert torch.allclose(one[2], packed[2], atol=TOL, rtol=0)
    assert float(one[2].abs().min()) > 0  # every prompt has history targets: a real comparison
    assert one[3].keys() == packed[3].keys() and len(one[3]) > 0
    for name in one[3]:
        assert torch.allclose(one[3][name], packed[3][name], atol=TOL, rtol=0), name


def test_sft_stage_with_packing_trains_like_one_prompt_per_row(tmp_path, monkeypatch):
    """The real SFT stage (Hydra config, Lightning Trainer) with ``sft.pack_tokens``: the same losses step by
    step as without packing (fp32 tiny model), so packing changes the cost, not the training."""
    import pandas as pd

    from napo_lab.models import logprobs
    from napo_lab.run import execute
    from tests.conftest import TINY, compose_cfg

    budgets = []

    def recording(lengths, pack_tokens):  # the real function, recording what the stage asked for
        budgets.append(pack_tokens)
        return pack_blocks(lengths, pack_tokens)

    monkeypatch.setattr(logprobs, "pack_blocks", recording)
    losses = {}
    for name, extra in (("one", []), ("packed", ["sft.pack_tokens=4096"])):
        out = tmp_path / name
        execute(compose_cfg([*TINY, "loss=sft", "sft.train_limit=8", "eval.protocol=ranking", *extra], out,
                            tmp_path / f"cache_{name}"))
        curve = pd.read_csv(out / "train_metrics.csv")
        losses[name] = curve[curve["stage"] == "sft"]["train/loss"].dropna().to_numpy()
    assert set(budgets) == {None, 4096}  # the packed run really packed, the other did not
    assert len(losses["one"]) == len(losses["packed"]) >= 2
    assert abs(losses["one"] - losses["packed"]).max() < 1e-4
