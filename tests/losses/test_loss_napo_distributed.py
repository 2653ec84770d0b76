"""NAPO's all-ranks pool on two CPU processes (gloo): the distributed result must equal the
single-process result on the concatenated batch, row for row, including gradients. Ranks hold
different batch sizes (3 and 2) to exercise the padding and the own-row offset on rank 1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from napo_lab.losses import NAPOLoss
from napo_lab.losses.base import LossInputs

SIZES = (3, 2)
CONFIGS = {
    "fixed_reuse": dict(share="reuse", rho=0.7, mask_false_negatives=True, granularity="user"),
    "official": dict(
        share="reuse", rho=0.7, mask_false_negatives=False, detach_shared=True, detach_own_negatives=True
    ),
}


def global_batch() -> dict[str, torch.Tensor]:
    """5 users, K = 2; items drawn from a small range so borrowed items collide with positives and
    histories (false negatives exist)."""
    g = torch.Generator().manual_seed(11)
    n, k = sum(SIZES), 2
    return {
        "policy_logps": torch.randn(n, 1 + k, generator=g, dtype=torch.float64) * 2 - 4,
        "lengths": torch.ones(n, 1 + k, dtype=torch.long),
        "mask": torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=torch.bool),
        "item_ids": torch.randint(0, 6, (n, 1 + k), generator=g),
        "history": torch.randint(-1, 6, (n, 3), generator=g),
        "user_states": torch.randn(n, 4, generator=g, dtype=torch.float64),
        "seq_scores": torch.randn(n, 1 + k, generator=g, dtype=torch.float64),
    }


def rows_of(rank: int) -> slice:
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(SIZES))
    try:
        data = global_batch()
        result = {}
        for name, cfg in CONFIGS.items():
            fields = {k: v[rows_of(rank)].clone() for k, v in data.items()}
            p = fields.pop("policy_logps").requires_grad_(True)
            loss = NAPOLoss(**cfg).train()
            out = loss(LossInputs(policy_logps=p, **fields))
            out.loss.backward()
            result[name] = {"loss": out.loss.detach(), "grad": p.grad, "ema": loss.margin.ema.clone()}
        fields = {k: v[rows_of(rank)].clone() for k, v in data.items()}
        exact = NAPOLoss(share="exact", gamma0=0.0)
        fields["cross_policy_logps"] = torch.zeros(SIZES[rank], SIZES[rank], 3, dtype=torch.float64)
        result["exact_neighbours"] = exact(LossInputs(**fields)).metrics["napo/n_neighbours"]
        torch.save(result, Path(out_dir) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
@pytest.mark.skipif(sys.platform == "win32", reason="gloo file init")
def test_all_ranks_pool_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=len(SIZES), join=True)
    got = [torch.load(tmp_path / f"{r}.pt") for r in range(len(SIZES))]
    data = global_batch()
    for name, cfg in CONFIGS.items():
        fields = dict(data)
        p = fields.pop("policy_logps").clone().requires_grad_(True)
        loss = NAPOLoss(**cfg).train()
        losses, has, _ = loss.per_example(LossInputs(policy_logps=p, **fields))
        # each rank's loss = mean over its own rows; DDP sums the ranks' gradients
        weights = torch.cat([torch.full((s,), 1.0 / s, dtype=torch.float64) for s in SIZES])
        assert has.all()
        (weights * losses).sum().backward()
        for rank in range(len(SIZES)):
            rows = rows_of(rank)
            res = got[rank][name]
            assert res["loss"].item() == pytest.approx(losses[rows].mean().item(), rel=1e-10)
            torch.testing.assert_close(res["grad"], p.grad[rows])
            assert res["ema"].item() == pytest.approx(loss.margin.ema.item(), rel=1e-6)
    # share=exact stays local: rank 0 has 3 users -> floor(0.7 * 2) = 1 neighbour; rank 1 -> 0
    assert [got[r]["exact_neighbours"].item() for r in range(2)] == [1.0, 0.0]
