"""NAPO's in-batch negative pool: neighbour selection and the all-ranks pool.

A user borrows the negatives of its ``rho * (N - 1)`` (rounded down, see :func:`n_neighbours`) most
similar users in the pool of N users, similarity being the dot product of the sequential model's user states. With
``torch.distributed`` initialised and world size > 1 the pool spans all ranks: states, negative
rewards, item ids and masks are all-gathered, rewards with the differentiable
``torch.distributed.nn.functional.all_gather`` so a borrowed negative's gradient returns to the rank
that owns it. Ranks may hold different batch sizes: rows are padded to the largest and padding rows
are never selected. Rank r's own rows start at ``r * max_rows`` in the gathered pool (the public code
gets this offset wrong on ranks > 0). A single-process call never calls a collective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Pool:
    """The users whose negatives can be borrowed. Row ``offset + i`` is local user i."""

    states: Tensor  # [N, D] detached user states
    rewards: Tensor  # [N, K] negative rewards (scored under the owner's prompt)
    mask: Tensor  # [N, K] bool, valid negatives
    items: Tensor  # [N, K] item ids (-1 where unknown)
    scores: Tensor | None  # [N, K] sequential-model score of each negative for its owner
    user_valid: Tensor  # [N] bool, False for padding rows
    offset: int
    n_users: int


def world() -> tuple[int, int] | None:
    """``(rank, world_size)`` when a multi-process group is initialised, else None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    size = dist.get_world_size()
    return (dist.get_rank(), size) if size > 1 else None


NEIGHBOUR_COUNTS = ("tolerant", "truncate")


def n_neighbours(rho: float, n_users: int, rule: str = "tolerant") -> int:
    """How many neighbours each user borrows from, out of the ``N - 1`` other users.

    ``truncate`` (the official code): ``int(rho * (N - 1))``, the floating-point product truncated,
    so a product that lands just below an integer loses one neighbour (rho = 0.58, N = 51:
    0.58 * 50 = 28.999999999999996 -> 28). ``tolerant`` (default): ``floor(rho * (N - 1) + 1e-9)``,
    the count meant by the decimal rho (29 there), without letting 2.9999 round up.
    """
    if rule == "truncate":
        return max(0, int(rho * (n_users - 1)))
    return max(0, math.floor(rho * (n_users - 1) + 1e-9))


def select_neighbours(local_states: Tensor, pool: Pool, n: int) -> Tensor:
    """``[B, n]`` pool row indices of each local user's n most similar other users.

    No gradient: the choice is discrete and the sequential model is frozen. Ties are broken by
    ``torch.topk``.
    """
    b = local_states.shape[0]
    if n == 0:
        return torch.zeros(b, 0, dtype=torch.long, device=local_states.device)
    with torch.no_grad():
        sim = local_states.detach().float() @ pool.states.float().T  # [B, N]
        sim = sim.masked_fill(~pool.user_valid[None, :], float("-inf"))
        own = torch.arange(b, device=sim.device) + pool.offset
        sim[torch.arange(b, device=sim.device), own] = float("-inf")
        return sim.topk(n, dim=1).indices


def local_pool(states: Tensor, rewards: Tensor, mask: Tensor, items: Tensor, scores: Tensor | None) -> Pool:
    n = states.shape[0]
    return Pool(
        states=states.detach(),
        rewards=rewards,
        mask=mask,
        items=items,
        scores=scores,
        user_valid=torch.ones(n, dtype=torch.bool, device=states.device),
        offset=0,
        n_users=n,
    )


def _gather_rows(t: Tensor, max_rows: int, world_size: int, differentiable: bool) -> Tensor:
    import torch.distributed as dist

    pad = max_rows - t.shape[0]
    if pad:
        t = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))], dim=0)
    if differentiable:
        import torch.distributed.nn.functional as dist_nn

        parts = dist_nn.all_gather(t.contiguous())
    else:
        parts = [torch.empty_like(t) for _ in range(world_size)]
        dist.all_gather(parts, t.contiguous())
    return torch.cat(list(parts), dim=0)


def batch_sizes(local_rows: int, device: torch.device, world_size: int) -> list[int]:
    import torch.distributed as dist

    size = torch.tensor([local_rows], dtype=torch.long, device=device)
    sizes = [torch.empty_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gathered_pool(
    states: Tensor,
    rewards: Tensor,
    mask: Tensor,
    items: Tensor,
    scores: Tensor | None,
    rank: int,
    world_size: int,
    sizes: list[int],
) -> Pool:
    """The all-ranks pool. Every rank must call this with the same K and the same choice of
    ``rewards.requires_grad`` (the differentiable gather runs a collective in backward too)."""
    max_rows = max(sizes)
    device = states.device
    differentiable = rewards.requires_grad
    g_states = _gather_rows(states.detach().float(), max_rows, world_size, False)
    g_rewards = _gather_rows(rewards, max_rows, world_size, differentiable)
    # bool is not supported by every backend: travel as uint8.
    g_mask = _gather_rows(mask.to(torch.uint8), max_rows, world_size, False).bool()
    g_items = _gather_rows(items.long(), max_rows, world_size, False)
    g_scores = None if scores is None else _gather_rows(scores.detach(), max_rows, world_size, False)
    row = torch.arange(max_rows, device=device)
    user_valid = torch.cat([row < s for s in sizes])
    return Pool(
        states=g_states,
        rewards=g_rewards,
        mask=g_mask & user_valid[:, None],
        items=g_items,
        scores=g_scores,
        user_valid=user_valid,
        offset=rank * max_rows,
        n_users=sum(sizes),
    )


def false_negatives(borrowed_items: Tensor, positive: Tensor, history: Tensor | None) -> Tensor:
    """``[B, n, K]`` bool: a borrowed item equal to the borrower's positive or in its history
    (history padding ``-1`` never matches, nor does an unknown item id < 0)."""
    hit = borrowed_items == positive[:, None, None]
    if history is not None and history.numel():
        h = history.long()
        in_hist = (borrowed_items[..., None] == h[:, None, None, :]) & (h[:, None, None, :] >= 0)
        hit = hit | in_hist.any(dim=-1)
    return hit & (borrowed_items >= 0)
