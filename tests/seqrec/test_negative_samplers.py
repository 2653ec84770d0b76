"""The six samplers of the negative-sampling study on a hand-built batch (napo_lab.data.negatives).

The batch (8 items, 4 rows):

    row  user  history   target   user's training items (exclude=user)
    0    10    [0]       1        {0, 1}
    1    11    [2]       3        {2, 3, 6}
    2    12    [4, 5]    2        {2, 4, 5}
    3    13    []        2        {2}

Frequencies come from a frequency vector given explicitly. Every distribution test draws many times and
compares empirical shares with the exact probabilities (tolerance 0.01 over >= 40k draws, i.e. > 4
standard errors); exclusions are exact (count 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from napo_lab.data.negatives import (
    NegativeDrawer,
    NegativeSpec,
    UserItems,
    adaptive_top_k,
    banned_mask,
    batch_pool,
    in_batch,
    popularity,
    uniform,
)

N_ITEMS = 8
USERS = torch.tensor([10, 11, 12, 13])
HISTORY = torch.tensor([[0, -1], [2, -1], [4, 5], [-1, -1]])
TARGET = torch.tensor([1, 3, 2, 2])
OWN = {10: {0, 1}, 11: {2, 3, 6}, 12: {2, 4, 5}, 13: {2}}
TOL = 0.01


@pytest.fixture()
def user_items() -> UserItems:
    return UserItems(list(OWN), [sorted(v) for v in OWN.values()], N_ITEMS)


def shares(items: torch.Tensor) -> np.ndarray:
    items = items[items >= 0]
    return np.bincount(items.numpy(), minlength=N_ITEMS) / max(len(items), 1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_user_items_and_frequency(user_items):
    rows = pd.DataFrame({"user": [10, 10, 11], "history": [[0], [0, 1], [2, 3]], "target": [1, 4, 6]})
    ui = UserItems.from_rows(rows, N_ITEMS)
    assert ui.of(10).tolist() == [0, 1, 4] and ui.of(11).tolist() == [2, 3, 6] and len(ui.of(99)) == 0
    # frequency = users holding the item (user 10 holds item 0 in two rows: counted once)
    assert ui.frequency().tolist() == [1, 1, 1, 1, 1, 0, 1, 0]
    rows_, cols_ = user_items.pairs([12, 99, 10])
    assert sorted(zip(rows_.tolist(), cols_.tolist())) == [(0, 2), (0, 4), (0, 5), (2, 0), (2, 1)]


def test_banned_mask_user_and_row(user_items):
    user = banned_mask(USERS, HISTORY, TARGET, N_ITEMS, "user", user_items)
    row = banned_mask(USERS, HISTORY, TARGET, N_ITEMS, "row")
    for b, u in enumerate(USERS.tolist()):
        assert set(user[b].nonzero().flatten().tolist()) == OWN[u]
    assert [set(r.nonzero().flatten().tolist()) for r in row] == [{0, 1}, {2, 3}, {2, 4, 5}, {2}]


def test_uniform_is_uniform_over_allowed_items(user_items):
    banned = banned_mask(USERS, HISTORY, TARGET, N_ITEMS, "user", user_items)
    draws = uniform(banned, 20_000, gen())
    for b in range(4):
        allowed = [i for i in range(N_ITEMS) if i not in OWN[USERS[b].item()]]
        expected = np.array([1 / len(allowed) if i in allowed else 0 for i in range(N_ITEMS)])
        got = shares(draws[b])
        assert np.abs(got - expected).max() < TOL, (b, got, expected)
        assert got[sorted(OWN[USERS[b].item()])].sum() == 0  # exclusions exact


def test_popularity_follows_frequency_exponent(user_items):
    freq = torch.tensor([5.0, 1, 4, 2, 0, 3, 1, 8])
    banned = banned_mask(USERS, HISTORY, TARGET, N_ITEMS, "user", user_items)
    for exponent in (1.0, 0.5):
        draws = popularity(freq, banned, 40_000, gen(1), exponent)
        for b in range(4):
            w = freq.double().pow(exponent).numpy() * (~banned[b]).numpy()
            got = shares(draws[b])
            assert np.abs(got - w / w.sum()).max() < TOL, (exponent, b, got)
            assert got[4] == 0  # never-trained item: never drawn
            assert got[sorted(OWN[USERS[b].item()])].sum() == 0


def test_in_batch_draws_positions_of_the_multiset(user_items):
    # targets pool = [1, 3, 2, 2]; row 0 (user 10 owns 0, 1) may use positions 1, 2, 3 -> items 3, 2, 2
    pool = batch_pool(HISTORY, TARGET, "targets")
    assert pool.tolist() == [1, 3, 2, 2]
    banned = banned_mask(USERS, HISTORY, TARGET, N_ITEMS, "user", user_items)
    many = torch.cat([in_batch(pool, banned, 1, g) for g in [gen(s) for s in range(30_000)]], dim=1)
    got = shares(many[0])
    np.testing.assert_allclose(got[[2, 3]], [2 / 3, 1 / 3], atol=TOL)  # proportional to multiplicity
    assert got[[0, 1, 4, 5, 6, 7]].sum() == 0
    # row 1 (user 11 owns 2, 3, 6): only item 1 remains; asking for 2 gives one item and one empty slot
    assert in_batch(pool, banned, 2, gen())[1].tolist() == [1, -1]
    # row 3 (user 13 owns 2): two allowed positions; asking for three leaves one slot empty
    three = in_batch(pool, banned, 3, gen())[3]
    assert sorted(three.tolist()) == [-1, 1, 3]  # positions 0 and 1 allowed (items 1, 3); 2 and 3 are user 13's


def test_in_batch_without_replacement_over_positions(user_items):
    """Row 0 asks for 3 of its 3 allowed positions: the multiset {3, 2, 2} comes back exactly."""
    pool = batch_pool(HISTORY, TARGET, "targets")
    banned = banned_mask(USERS, HISTORY, TARGET, N_ITEMS, "user", user_items)
    for s in range(50):
        assert sorted(in_batch(pool, banned, 3, gen(s))[0].tolist()) == [2, 2, 3]


def test_positions_pool_holds_every_item_of_the_batch():
    pool = batch_pool(HISTORY, TARGET, "positions")
    assert sorted(pool.tolist()) == sorted([0, 2, 4, 5, 1, 3, 2, 2])


@pytest.mark.parametrize("sampler", ["rns", "pns", "bns", "mns", "ans", "amns"])
def test_drawer_shapes_and_exclusions(sampler, user_items):
    knobs = {"rns": {}, "pns": {}, "bns": {}, "mns": {"num_uniform": 3}, "ans": {"top_k": 2},
             "amns": {"num_uniform": 3, "top_k": 2}}[sampler]
    spec = NegativeSpec(sampler=sampler, num_samples=2, pool="positions", **knobs)
    drawer = NegativeDrawer(spec, N_ITEMS, np.array([5, 1, 4, 2, 0, 3, 1, 8]), user_items)
    for s in range(200):
        items = drawer.draw(USERS, HISTORY, TARGET, gen(s)).items
        assert items.shape == (4, spec.width)
        for b, u in enumerate(USERS.tolist()):
            assert not (set(items[b].tolist()) & OWN[u]), (sampler, b, items[b])


def test_mixed_appends_uniform_items(user_items):
    spec = NegativeSpec(sampler="mns", num_samples=1, num_uniform=40, pool="targets")
    drawer = NegativeDrawer(spec, N_ITEMS, None, user_items)
    g = gen(7)
    uni = torch.cat([drawer.draw(USERS, HISTORY, TARGET, g).items[:, 1:] for _ in range(1500)], dim=1)
    allowed = [i for i in range(N_ITEMS) if i not in OWN[10]]
    np.testing.assert_allclose(shares(uni[0])[allowed], 1 / len(allowed), atol=TOL)


def test_adaptive_picks_the_true_top_k():
    scores = torch.tensor([[0.1, 3.0, -2.0, 5.0, 1.0], [9.0, 8.0, 7.0, 6.0, 5.0]])
    valid = torch.tensor([[True, True, True, True, True], [False, True, True, False, True]])
    keep = adaptive_top_k(scores, valid, 2)
    assert keep.tolist() == [[False, True, False, True, False], [False, True, True, False, False]]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # random scores: the kept set equals the k largest valid scores
        s, v = torch.randn(6, 9, generator=g), torch.rand(6, 9, generator=g) > 0.3
        keep = adaptive_top_k(s, v, 3)
        for b in range(6):
            idx = v[b].nonzero().flatten()
            best = set(idx[s[b, idx].argsort(descending=True)[:3]].tolist())
            assert set(keep[b].nonzero().flatten().tolist()) == best


def test_spec_refuses_bad_settings():
    with pytest.raises(ValueError, match="choose one of"):
        NegativeSpec(sampler="hard")
    with pytest.raises(ValueError, match="num_uniform"):
        NegativeSpec(sampler="mns", num_samples=3)
    with pytest.raises(ValueError, match="top_k"):
        NegativeSpec(sampler="ans", num_samples=3, top_k=4)
    with pytest.raises(ValueError, match="top_k"):
        NegativeSpec(sampler="bns", top_k=2)
    with pytest.raises(ValueError, match="pool"):
        NegativeSpec(sampler="bns", pool="everything")
    with pytest.raises(ValueError, match="unknown keys"):
        NegativeSpec.from_cfg({"sampler": "rns", "num_negs": 3})
    spec = NegativeSpec.from_cfg({"name": "amns", "sampler": "amns", "num_samples": 10, "num_uniform": 100, "top_k": 25})
    assert (spec.width, spec.kept, spec.adaptive, spec.uses_batch) == (110, 25, True, True)
