"""NAPO on two CPU processes (gloo).

1. The all-ranks pool: the distributed result must equal the single-process result on the
   concatenated batch, row for row, including gradients. Ranks hold different batch sizes (3 and 2)
   to exercise the padding and the own-row offset on rank 1.
2. The official distributed margin (``distributed_margin=local``) against values worked by hand.
"""

from __future__ import annotations

import math
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
        "seq_all_scores": torch.randn(n, 6, generator=g, dtype=torch.float64),
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


# --------------------------------------------------------------------------- the official margin
# Hand-built global batch: 4 users, K = 1, rank 0 holds u0, u1, u2 and rank 1 holds u3 (unequal sizes,
# so the mean of the ranks' means differs from the mean over all pairs). rho = 0.5, N = 4:
# int(0.5 * 3) = 1 neighbour, by dot product of the states
#   u0 = [1, 0]    : u1 0,   u2 0.9, u3 2   -> u3
#   u1 = [0, 1]    : u0 0,   u2 0.1, u3 0   -> u2
#   u2 = [.9, .1]  : u0 0.9, u1 0.1, u3 1.8 -> u3
#   u3 = [2, 0]    : u0 2,   u1 0,   u2 1.8 -> u0
# Each negative's score for its owner: u0 1, u1 2, u2 3, u3 8 (owner's score: borrowed_score=owner).
# Candidate confidences: u0 {1, 8}, u1 {2, 3}, u2 {3, 8} (rank 0), u3 {8, 1} (rank 1).
# All log-probs are 0, so every user's loss is log(1 + 2 e^gamma).
OFFICIAL_SIZES = (3, 1)
MARGIN_CONFIGS = {
    "local": dict(distributed_margin="local", ema_in_eval=True, ema_bias_correction=False),
    "global": dict(distributed_margin="global", ema_in_eval=True, ema_bias_correction=False),
}


def official_batch(rank: int) -> LossInputs:
    states = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [2.0, 0.0]], dtype=torch.float64)
    scores = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 8.0]], dtype=torch.float64)
    items = torch.tensor([[10, 20], [11, 21], [12, 22], [13, 23]])
    rows = slice(0, 3) if rank == 0 else slice(3, 4)
    b = rows.stop - rows.start
    return LossInputs(
        policy_logps=torch.zeros(b, 2, dtype=torch.float64, requires_grad=True),
        lengths=torch.ones(b, 2, dtype=torch.long),
        mask=torch.ones(b, 2, dtype=torch.bool),
        item_ids=items[rows],
        history=torch.full((b, 1), -1),
        user_states=states[rows],
        seq_scores=scores[rows],
    )


def _official_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        result = {}
        for name, cfg in MARGIN_CONFIGS.items():
            loss = NAPOLoss(share="reuse", rho=0.5, neighbour_count="truncate", borrowed_score="owner",
                            mask_false_negatives=False, detach_shared=True, detach_own_negatives=True,
                            gamma0=1.0, alpha=0.3, momentum=0.9, **cfg)
            steps = []
            for mode in ("train", "train", "eval"):
                loss.train(mode == "train")
                out = loss(official_batch(rank))
                steps.append({k: out.metrics[f"napo/{k}"].item() for k in ("m_batch", "gamma", "ema")}
                             | {"loss": out.loss.item(), "raw_ema": loss.margin.ema.item()})
            result[name] = steps
        torch.save(result, Path(out_dir) / f"official{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
@pytest.mark.skipif(sys.platform == "win32", reason="gloo file init")
def test_official_local_margin_and_rank_averaged_ema(tmp_path):
    """distributed_margin=local (official): each rank's gamma uses its own M_batch, the EMA moves by
    the mean of the ranks' M_batch; with ema_in_eval the eval step (3rd) moves it too.
      rank 0: M = (1+8+2+3+3+8)/6 = 25/6,  rank 1: M = (8+1)/2 = 9/2,  mean of means = 13/3
      step 1: EMA = 0.1 * 13/3 = 13/30
              gamma_0 = 1 - 0.3 (25/6 - 13/30) = -0.12,  gamma_1 = 1 - 0.3 (9/2 - 13/30) = -0.22
      step 2: EMA = 0.9 * 13/30 + 0.1 * 13/3 = 0.82333...;  gamma_r = 1 - 0.3 (M_r - EMA)
      step 3 (eval): EMA = 0.9 * 0.82333... + 0.1 * 13/3 = 1.174333...
    distributed_margin=global (napo's): M = 34/8 = 4.25 on both ranks, EMA = 0.425, 0.8075,
    1.15175; gamma = 1 - 0.3 (4.25 - EMA), the same on both ranks."""
    mp.spawn(_official_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"official{r}.pt") for r in range(2)]

    local_m, mean_of_means = (25 / 6, 9 / 2), 13 / 3
    pooled = 34 / 8
    for name, levels, ema_input in (("local", local_m, mean_of_means), ("global", (pooled, pooled), pooled)):
        ema = 0.0
        for step in range(3):
            ema = 0.9 * ema + 0.1 * ema_input
            for rank in range(2):
                res = got[rank][name][step]
                gamma = 1.0 - 0.3 * (levels[rank] - ema)
                assert res["m_batch"] == pytest.approx(levels[rank], rel=1e-6), (name, step, rank)
                assert res["ema"] == pytest.approx(ema, rel=1e-6) and res["raw_ema"] == pytest.approx(ema, rel=1e-6)
                assert res["gamma"] == pytest.approx(gamma, rel=1e-5, abs=1e-6), (name, step, rank)
                assert res["loss"] == pytest.approx(math.log1p(2 * math.exp(gamma)), rel=1e-6)
    assert got[0]["local"][0]["gamma"] == pytest.approx(-0.12, abs=1e-6)
    assert got[1]["local"][0]["gamma"] == pytest.approx(-0.22, abs=1e-6)
    assert got[0]["global"][0]["gamma"] == pytest.approx(-0.1475, abs=1e-6)
