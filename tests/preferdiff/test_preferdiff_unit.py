"""PreferDiff pieces on hand-sized inputs: the loss, the in-batch centroid, the schedule, DDIM."""

from __future__ import annotations

import math

import pytest
import torch

from napo_lab.models.preferdiff import (
    DDIMSampler,
    DiffusionSchedule,
    PreferDiff,
    PreferDiffConfig,
    in_batch_centroids,
    preferdiff_loss,
    reconstruction_error,
)

E = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two target embeddings
P = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # denoised positives
Q = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # denoised centroids


def test_centroids_of_a_two_item_batch_swap_the_rows():
    """With B = 2 the other rows' mean is simply the other row; with B = 3 it is the mean of two."""
    assert torch.equal(in_batch_centroids(E), E.flip(0))
    three = torch.tensor([[3.0], [6.0], [9.0]])
    assert torch.allclose(in_batch_centroids(three), torch.tensor([[7.5], [6.0], [4.5]]))
    with pytest.raises(ValueError, match="at least 2"):
        in_batch_centroids(E[:1])


def test_loss_by_hand_on_a_two_item_batch():
    """Centroids c1 = e2 = (0,1), c2 = e1 = (1,0). Cosine errors (cos - 1)^2:
    positives: cos(e1, (1,1)) = 1/sqrt2 -> (1/sqrt2 - 1)^2 = 0.0857864; cos(e2, (0,1)) = 1 -> 0.
    centroids: cos((0,1), (1,0)) = 0 -> 1; cos((1,0), (-1,0)) = -1 -> 4.
    batch:  l_pos = 0.0428932, l_neg = 2.5; gamma = 1: -log sigmoid(-(l_pos - l_neg)) = log(1 + e^{-2.4571068})
            = 0.0822088; lam = 0.5: L = 0.5 * 0.0822088 + 0.5 * 0.0428932 = 0.0625510.
    per_example: log(1 + e^{0.0857864 - 1}) = 0.3370662, log(1 + e^{0 - 4}) = 0.0181499;
            L = mean(0.5 * 0.3370662 + 0.5 * 0.0857864, 0.5 * 0.0181499 + 0.5 * 0) = 0.1102506."""
    c = in_batch_centroids(E)
    out = preferdiff_loss(E, P, c, Q, gamma=1.0, lam=0.5)
    assert out.l_pos.item() == pytest.approx((1 / math.sqrt(2) - 1) ** 2 / 2, abs=1e-6)
    assert out.l_neg.item() == pytest.approx(2.5, abs=1e-6)
    assert out.loss.item() == pytest.approx(0.0625510, abs=1e-6)
    assert out.accuracy.item() == 1.0
    per = preferdiff_loss(E, P, c, Q, gamma=1.0, lam=0.5, reduction="per_example")
    assert per.loss.item() == pytest.approx(0.1102506, abs=1e-6)
    # gamma = 5 (the default): the preference term is saturated: log(1 + e^{-5 * 2.4571068}) = 4.6e-6.
    assert preferdiff_loss(E, P, c, Q, gamma=5.0, lam=0.5).loss.item() == pytest.approx(
        0.5 * math.log1p(math.exp(-5 * 2.4571068)) + 0.5 * 0.0428932, abs=1e-6)


@pytest.mark.parametrize("reduction", ["batch", "per_example"])
def test_lambda_one_is_the_generative_loss(reduction):
    """lam = 1 drops the preference term: L = mean cosine error of the positives, whatever the negatives."""
    g = torch.Generator().manual_seed(0)
    e, p, c, q = (torch.randn(8, 5, generator=g) for _ in range(4))
    out = preferdiff_loss(e, p, c, q, gamma=5.0, lam=1.0, reduction=reduction)
    assert torch.equal(out.loss, reconstruction_error(e, p).mean())
    out2 = preferdiff_loss(e, p, 10 * c, -q, gamma=5.0, lam=1.0, reduction=reduction)
    assert torch.equal(out.loss, out2.loss)


def test_model_loss_with_lambda_one_equals_the_reconstruction_of_the_positive():
    """The model's training loss at lam = 1, recomputed from its parts with the same random draws."""
    model = PreferDiff(20, hidden_size=8, lam=1.0, dropout=0.0, p_uncond=0.0)
    history = torch.tensor([[1, 2, 3, -1], [4, 5, -1, -1], [6, 7, 8, 9]])
    target = torch.tensor([10, 11, 12])
    torch.manual_seed(3)
    loss = model.training_loss(history, target).loss
    torch.manual_seed(3)
    h = model.drop_condition(model.user_states(history))  # draws the same uniform numbers (all kept)
    pos = model.item_emb(target)
    t = torch.randint(0, model.schedule.timesteps, (3,))
    x_pos = model.schedule.q_sample(pos, t, torch.randn_like(pos))
    expected = reconstruction_error(pos, model.denoise(x_pos, h, t)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_linear_schedule_matches_the_public_settings():
    s = DiffusionSchedule(2000, 1e-4, 0.02, "linear")
    assert s.betas.shape == (2000,)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert s.alphas_cumprod[-1].item() == pytest.approx(float(torch.prod(1 - s.betas)), rel=1e-12)
    x0, noise = torch.ones(2, 3), torch.zeros(2, 3)
    t = torch.tensor([0, 1999])
    xt = s.q_sample(x0, t, noise)
    assert torch.allclose(xt[:, 0], s.alphas_cumprod[t].sqrt().float())


def test_ddim_uses_21_steps_with_the_code_time_indices():
    """indices 0, 100, ..., 2000: the denoiser sees t = 2000 first (the public code's indexing)."""
    s = DiffusionSchedule()
    seen = []
    sampler = DDIMSampler(s, 100)
    assert sampler.num_steps == 21
    sampler.sample(lambda x, t: seen.append(int(t[0])) or x, lambda x, t: x, torch.zeros(1, 2), w=0.0)
    assert seen == list(range(2000, -1, -100))
    seen.clear()
    DDIMSampler(s, 100, align_time=True).sample(lambda x, t: seen.append(int(t[0])) or x, lambda x, t: x,
                                                torch.zeros(1, 2), w=0.0)
    assert seen == [1999, *range(1899, 0, -100), 0]


def test_ddim_returns_the_oracle_x0_and_applies_guidance():
    """A denoiser that always predicts x0 makes DDIM return x0 exactly (the last step has c1 = 1, c2 = 0);
    with guidance the result is (1 + w) cond - w uncond."""
    s = DiffusionSchedule()
    sampler = DDIMSampler(s, 100)
    x0 = torch.tensor([[0.3, -1.2]])
    out = sampler.sample(lambda x, t: x0, lambda x, t: torch.zeros_like(x0), torch.randn(1, 2), w=0.0)
    assert torch.allclose(out, x0, atol=1e-6)
    out = sampler.sample(lambda x, t: x0, lambda x, t: torch.ones_like(x0), torch.randn(1, 2), w=4.0)
    assert torch.allclose(out, 5 * x0 - 4, atol=1e-5)


def test_ddim_is_deterministic_with_fixed_noise():
    model = PreferDiff(30, hidden_size=8).eval()
    history = torch.tensor([[1, 2, 3], [4, 5, -1]])
    h = model.user_states(history)
    noise = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    a, b = model.sample_x0(h, noise), model.sample_x0(h, noise.clone())
    assert torch.equal(a, b)
    assert not torch.allclose(a, model.sample_x0(h, noise + 1.0))
    model.sample_seed = 7  # no explicit noise: a seeded draw per call, so scores repeat
    assert torch.equal(model.scores(history), model.scores(history))
    cands = torch.tensor([[5, 9, -1], [0, 1, 2]])
    full = model.scores(history)
    got = model.candidate_scores(history, cands)
    assert torch.allclose(got[:, :2], full.gather(1, cands.clamp(min=0))[:, :2]) and got[0, 2] == 0


def test_null_condition_replaces_rows_with_probability_p():
    model = PreferDiff(10, hidden_size=8, p_uncond=0.3)
    h = torch.randn(4000, 8)
    out = model.drop_condition(h, torch.Generator().manual_seed(0))
    is_null = (out == model.null_emb).all(1).float().mean().item()
    assert is_null == pytest.approx(0.3, abs=0.03)


def test_config_checks_and_code_defaults():
    cfg = PreferDiffConfig.from_cfg({"lr": "1e-4", "kind": "preferdiff", "hidden_size": 128})
    assert (cfg.timesteps, cfg.ddim_step, cfg.guidance_w, cfg.gamma, cfg.p_uncond) == (2000, 100, 4.0, 5.0, 0.1)
    assert cfg.lr == 1e-4 and cfg.hidden_size == 128
    with pytest.raises(ValueError, match="even"):
        PreferDiffConfig(hidden_size=63, num_heads=1)
    with pytest.raises(ValueError, match="reduction"):
        PreferDiffConfig(reduction="sum")
    with pytest.raises(ValueError, match="lam"):
        PreferDiffConfig(lam=1.5)
