"""Unit tests of the sequential recommenders' modules (no training data needed)."""

from __future__ import annotations

import pytest
import torch

from napo_lab.models.seqrec import ARCHS, SeqRecConfig, build_seqrec, compact_history, pad_histories

N_ITEMS = 30


def small(arch: str):
    torch.manual_seed(0)
    cfg = SeqRecConfig(arch=arch, hidden_size=16, max_len=6, num_layers=2, num_heads=2, n_h=4, n_v=2)
    return build_seqrec(cfg, N_ITEMS).eval()


def test_compact_history_right_aligns_last_items():
    h = torch.tensor([[3, 4, 5, -1, -1], [-1, -1, 1, 2, -1], [1, 2, 3, 4, 5], [-1, -1, -1, -1, -1]])
    out = compact_history(h, max_len=3, pad_id=9)
    assert out.tolist() == [[3, 4, 5], [9, 1, 2], [3, 4, 5], [9, 9, 9]]


def test_pad_histories_keeps_last_items():
    out = pad_histories([[1, 2, 3], [4], [5, 6, 7, 8, 9]], width=4)
    assert out.tolist() == [[1, 2, 3, -1], [4, -1, -1, -1], [6, 7, 8, 9]]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_shapes_and_candidate_gather(arch):
    model = small(arch)
    history = torch.tensor([[1, 2, 3, -1], [4, 5, 6, 7], [8, -1, -1, -1]])
    states, scores = model.user_states(history), model.scores(history)
    assert states.shape == (3, 16) and scores.shape == (3, N_ITEMS)
    assert torch.isfinite(scores).all()
    candidates = torch.tensor([[0, 5, 29, 3], [1, 2, 3, 4], [9, 8, 7, 6]])
    gathered = scores.gather(1, candidates)
    torch.testing.assert_close(model.candidate_scores(history, candidates), gathered)
    # -1 (masked completion) scores exactly 0 instead of failing, even after training steps.
    padded = model.candidate_scores(history, torch.tensor([[0, -1], [1, -1], [2, -1]]))
    assert (padded[:, 1] == 0).all()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_padding_invariance(arch):
    """Right padding, left padding, interior padding, extra width and no padding give the same state;
    a history longer than max_len equals its last max_len items."""
    model = small(arch)
    variants = torch.tensor(
        [
            [7, 3, 11, -1, -1, -1, -1, -1],
            [-1, -1, -1, -1, -1, 7, 3, 11],
            [-1, 7, -1, 3, -1, -1, 11, -1],
        ]
    )
    states = model.user_states(variants)
    bare = model.user_states(torch.tensor([[7, 3, 11]]))
    for row in states:
        torch.testing.assert_close(row, bare[0])
    long = torch.arange(1, 13).unsqueeze(0)  # 12 items, max_len 6
    torch.testing.assert_close(model.user_states(long), model.user_states(long[:, -6:]))
    # Order matters (the models are sequential, not bags of items).
    assert not torch.allclose(model.user_states(torch.tensor([[11, 3, 7]])), bare)


def test_sasrec_is_causal_and_ignores_padding_embeddings():
    model = small("sasrec")
    seq = compact_history(torch.tensor([[2, 3, 4, 5]]), model.max_len, model.pad_id)
    base = model.encode(seq)
    changed = seq.clone()
    changed[0, -1] = 17  # change only the last item: earlier positions must not move
    out = model.encode(changed)
    torch.testing.assert_close(out[:, :-1], base[:, :-1])
    assert not torch.allclose(out[:, -1], base[:, -1])


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_freeze(arch):
    model = small(arch).train().freeze()
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())


def test_config_from_yaml_files():
    from pathlib import Path

    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[2] / "conf" / "model"
    for arch in ARCHS:
        cfg = OmegaConf.merge({"seed": 7}, {"model": OmegaConf.load(root / f"{arch}.yaml")}).model
        assert cfg.kind == "seqrec" and cfg.arch == arch
        parsed = SeqRecConfig.from_cfg(cfg)
        assert parsed.arch == arch and parsed.seed == 7 and parsed.hidden_size == 64
        assert isinstance(parsed.lr, float)
        assert build_seqrec(parsed, 10).user_states(torch.tensor([[1, 2, 3]])).shape == (1, 64)


def test_config_coerces_and_validates():
    assert SeqRecConfig.from_cfg({"lr": "1e-3", "batch_size": "32"}).lr == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        SeqRecConfig.from_cfg({"arch": "bert4rec"})
    # Keys that do not change the weights stay out of the cache key.
    a = SeqRecConfig.from_cfg({"device": "cpu", "num_threads": 2}).training_key()
    b = SeqRecConfig.from_cfg({"device": "auto"}).training_key()
    assert a == b
    assert "num_heads" not in SeqRecConfig(arch="gru4rec").training_key()
