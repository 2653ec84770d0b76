"""The cached zero-shot reference belongs to the exact rows a run evaluates: another prepared dataset
(here the same generator with fewer test users) gets another cache entry, never the first one's numbers."""

from __future__ import annotations

from napo_lab.recipe import build
from napo_lab.recipe.references import zero_shot_key
from tests.conftest import TINY, compose_cfg


def test_zero_shot_cache_key_follows_the_prepared_data(tmp_path, cache_dir):
    keys, roots = [], []
    for n in (100, 50):
        cfg = compose_cfg([*TINY, f"dataset.n_test_users={n}"], tmp_path / str(n), cache_dir)
        prepared = build.data(cfg)
        keys.append(zero_shot_key(cfg, prepared))
        roots.append(prepared.root.name)
    assert roots[0] != roots[1] and keys[0] != keys[1]
    assert {k["data"] for k in keys} == set(roots)
