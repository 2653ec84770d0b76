"""Properties every objective must have: metrics, padding, invariances, gradient signs, finiteness,
equivalences, constructor validation, and the configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from napo_lab.config.compose import group
from napo_lab.losses import (
    CDPOLoss,
    DMPOLoss,
    DPOLoss,
    IPOLoss,
    NAPOLoss,
    RecPOLoss,
    RosePOLoss,
    SDPOLoss,
    SFTLoss,
    SimPOLoss,
)
from napo_lab.losses.base import REWARD_METRICS, LossInputs

CONF = Path(__file__).resolve().parents[2] / "conf" / "loss"

# name -> factory; every loss here runs on the generic inputs below (NAPO without sharing so it needs
# no states; its dynamic margin reads seq_scores).
LOSSES = {
    "sft": SFTLoss,
    "dpo": lambda: DPOLoss(beta=0.7),
    "sdpo": lambda: SDPOLoss(beta=0.7),
    "cdpo": lambda: CDPOLoss(beta=0.7, eps=0.2),
    "ipo": lambda: IPOLoss(beta=0.7),
    "simpo": lambda: SimPOLoss(beta=2.0, gamma=0.5),
    "dmpo": lambda: DMPOLoss(beta=0.7),
    "recpo": lambda: RecPOLoss(beta=0.7, margin=0.3),
    "recpo_seq": lambda: RecPOLoss(beta=0.7, margin=0.3, margin_mode="seq_score"),
    "rosepo": lambda: RosePOLoss(beta=0.7),
    "napo_none": lambda: NAPOLoss(share="none"),
    "napo_ref": lambda: NAPOLoss(share="none", use_reference=True, granularity="negative"),
}
PREFERENCE = [n for n in LOSSES if n != "sft"]


def generic(b: int = 3, k: int = 3, dtype=torch.float64, seed: int = 0, scale: float = 3.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "policy_logps": (torch.randn(b, 1 + k, generator=g) * scale - 5).to(dtype),
        "ref_logps": (torch.randn(b, 1 + k, generator=g) * scale - 5).to(dtype),
        "lengths": torch.randint(1, 6, (b, 1 + k), generator=g),
        "mask": torch.ones(b, 1 + k, dtype=torch.bool),
        "seq_scores": torch.randn(b, 1 + k, generator=g).to(dtype),
        "item_ids": torch.arange(b * (1 + k)).view(b, 1 + k),
    }


def run(name: str, fields: dict, loss=None):
    fields = dict(fields)
    p = fields.pop("policy_logps").detach().clone().requires_grad_(True)
    out = (loss or LOSSES[name]())(LossInputs(policy_logps=p, **fields))
    out.loss.backward()
    return out, p.grad


@pytest.mark.parametrize("name", list(LOSSES))
def test_metrics_named_detached_finite(name):
    out, grad = run(name, generic())
    for key in REWARD_METRICS:
        assert key in out.metrics
    for value in out.metrics.values():
        assert not value.requires_grad and value.dim() == 0 and torch.isfinite(value)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("pad", [1e4, -1e4, float("nan"), float("inf"), float("-inf")])
def test_masked_negative_changes_nothing(name, pad):
    """Appending a masked column with any value leaves loss, metrics and gradients unchanged, and its
    gradient is exactly 0 (no NaN)."""
    base = generic(k=2)
    out_a, grad_a = run(name, base)
    padded = {key: torch.cat([v, v[:, -1:]], dim=1) if v.dim() == 2 else v for key, v in base.items()}
    padded["mask"][:, -1] = False
    for key in ("policy_logps", "ref_logps", "seq_scores"):
        padded[key][:, -1] = pad
    out_b, grad_b = run(name, padded)
    assert out_b.loss.item() == pytest.approx(out_a.loss.item(), rel=1e-12)
    for key in out_a.metrics:
        assert out_b.metrics[key].item() == pytest.approx(out_a.metrics[key].item(), rel=1e-6, abs=1e-12)
    assert torch.equal(grad_b[:, -1], torch.zeros(3, dtype=grad_b.dtype))
    assert torch.allclose(grad_b[:, :-1], grad_a)


def test_fully_masked_example_is_left_out():
    """An example whose only negative is masked contributes to neither numerator nor denominator."""
    one = generic(b=1, k=1)
    two = {k: torch.cat([v, v], 0) for k, v in one.items()}
    two["mask"][1, 1] = False
    for name in ("dpo", "sdpo", "dmpo", "napo_none"):
        assert run(name, two)[0].loss.item() == pytest.approx(run(name, one)[0].loss.item())


# Invariances. With the reference held fixed, adding c_b to all of example b's policy log-probs
# cancels in every difference h_w - h_l (DPO, S-DPO, cDPO, DMPO, RecPO, RosePO, NAPO without
# sharing). Length-normalised losses (IPO, SimPO) are instead invariant to a per-TOKEN constant,
# i.e. adding c_b * |y| to each completion. SFT is invariant to neither.
SHIFT_INVARIANT = ["dpo", "sdpo", "cdpo", "dmpo", "recpo", "recpo_seq", "rosepo", "napo_none", "napo_ref"]


@pytest.mark.parametrize("name", SHIFT_INVARIANT)
def test_per_example_constant_shift(name):
    base = generic()
    shifted = dict(base)
    shifted["policy_logps"] = base["policy_logps"] + torch.tensor(
        [[3.0], [-7.0], [11.0]], dtype=torch.float64
    )
    assert run(name, shifted)[0].loss.item() == pytest.approx(run(name, base)[0].loss.item(), rel=1e-10)


@pytest.mark.parametrize("name", ["ipo", "simpo"])
def test_length_normalised_shift(name):
    base = generic()
    shifted = dict(base)
    c = torch.tensor([[0.5], [-2.0], [1.5]], dtype=torch.float64)
    shifted["policy_logps"] = base["policy_logps"] + c * base["lengths"]
    assert run(name, shifted)[0].loss.item() == pytest.approx(run(name, base)[0].loss.item(), rel=1e-10)
    plain = dict(base)
    plain["policy_logps"] = base["policy_logps"] + c  # not per-token: generally changes the loss
    assert run(name, plain)[0].loss.item() != pytest.approx(run(name, base)[0].loss.item(), rel=1e-6)


@pytest.mark.parametrize("name", ["dpo", "sdpo", "cdpo", "ipo", "dmpo", "recpo", "rosepo", "napo_ref"])
def test_same_offset_in_policy_and_reference(name):
    """Reference-based losses only see h = s - s_ref: any per-completion offset added to both cancels."""
    base = generic()
    offset = torch.randn(
        base["policy_logps"].shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    moved = dict(
        base, policy_logps=base["policy_logps"] + 9 * offset, ref_logps=base["ref_logps"] + 9 * offset
    )
    assert run(name, moved)[0].loss.item() == pytest.approx(run(name, base)[0].loss.item(), rel=1e-10)


@pytest.mark.parametrize("name", PREFERENCE)
def test_gradient_signs(name):
    """At equal rewards (all h = 0, equal lengths), d loss/d s_w < 0 and d loss/d s_l > 0."""
    fields = generic()
    fields["policy_logps"] = torch.zeros_like(fields["policy_logps"])
    fields["ref_logps"] = torch.zeros_like(fields["ref_logps"])
    fields["lengths"] = torch.full_like(fields["lengths"], 2)
    _, grad = run(name, fields)
    assert (grad[:, 0] < 0).all() and (grad[:, 1:] > 0).all()


def test_sft_gradient_sign():
    _, grad = run("sft", generic())
    assert (grad[:, 0] < 0).all() and (grad[:, 1:] == 0).all()


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("gap", [1e3, -1e3])
def test_finite_at_large_gaps(name, dtype, gap):
    fields = generic(dtype=dtype)
    fields["policy_logps"] = torch.tensor([[0.0, gap, gap / 2, -gap]] * 3, dtype=dtype)
    fields["ref_logps"] = torch.zeros_like(fields["policy_logps"])
    out, grad = run(name, fields)
    assert torch.isfinite(out.loss) and torch.isfinite(grad).all()
    assert grad.dtype == dtype


def test_sdpo_does_not_overflow_where_exp_then_log_does():
    """The published exp-then-log form gives inf at a gap of 1e3 in fp32; logsumexp gives ~1e3."""
    fields = generic(b=1, k=1, dtype=torch.float32)
    fields["policy_logps"] = torch.tensor([[0.0, 1e3]])
    fields["ref_logps"] = torch.zeros(1, 2)
    naive = torch.log(1 + torch.exp(torch.tensor(1e3)))
    assert torch.isinf(naive)
    assert run("sdpo", fields, SDPOLoss(beta=1.0))[0].loss.item() == pytest.approx(1e3)


def test_napo_without_sharing_or_margin_is_reference_free_sdpo():
    fields = generic(b=5, k=3, seed=3)
    fields["mask"][1, 2:] = False
    fields["mask"][4, 1:] = False
    a, ga = run("", fields, NAPOLoss(share="none", gamma0=0.0, beta=0.8))
    b, gb = run("", fields, SDPOLoss(beta=0.8, use_reference=False))
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-12)
    assert torch.allclose(ga, gb)
    for key in REWARD_METRICS:
        assert a.metrics[key].item() == pytest.approx(b.metrics[key].item(), rel=1e-6)


def test_napo_with_reference_matches_sdpo_with_reference():
    fields = generic(b=4, k=3, seed=4)
    a, _ = run("", fields, NAPOLoss(share="none", gamma0=0.0, use_reference=True))
    b, _ = run("", fields, SDPOLoss(beta=1.0))
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-12)


def test_missing_reference_is_a_clear_error():
    fields = generic()
    fields.pop("ref_logps")
    with pytest.raises(ValueError, match="ref_logps"):
        run("dpo", fields)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: DPOLoss(beta=0.0), "beta"),
        (lambda: SDPOLoss(beta=-1.0), "beta"),
        (lambda: SimPOLoss(beta=float("nan")), "beta"),
        (lambda: CDPOLoss(eps=0.5), r"eps must be in \[0, 0.5\)"),
        (lambda: CDPOLoss(eps=-0.1), "eps"),
        (lambda: RosePOLoss(eps_max=0.6), "eps_max"),
        (lambda: RosePOLoss(eps_fallback=0.5), "eps_fallback"),
        (lambda: RosePOLoss(smoothing_source="oracle"), "smoothing_source"),
        (lambda: RecPOLoss(margin_mode="adaptive"), "margin_mode"),
        (lambda: NAPOLoss(rho=0.0), r"rho must be in \(0, 1\]"),
        (lambda: NAPOLoss(rho=1.5), "rho"),
        (lambda: NAPOLoss(share="all"), "share must be one of none|reuse|exact"),
        (lambda: NAPOLoss(granularity="token"), "granularity"),
        (lambda: NAPOLoss(momentum=1.0), "momentum"),
        (lambda: NAPOLoss(beta=0), "beta"),
        (lambda: NAPOLoss(alpha=float("inf")), "alpha"),
    ],
)
def test_constructor_validation(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


EXPECTED_CONFIGS = {
    "sft",
    "dpo",
    "sdpo",
    "napo",
    "napo_official",
    "rosepo",
    "cdpo",
    "ipo",
    "simpo",
    "dmpo",
    "recpo",
}


def test_configs_instantiate_with_declared_needs():
    found = {p.stem for p in CONF.glob("*.yaml")}
    assert EXPECTED_CONFIGS <= found
    for name in EXPECTED_CONFIGS:
        cfg = group("loss", name)
        assert cfg.name == name
        assert cfg.stage in ("sft", "pref")
        assert "strategy" in cfg.negatives and "weights" in cfg.negatives
        loss = instantiate(cfg.objective)
        assert {"needs_reference", "needs_sequential_model", "needs_cross_logps"} <= set(dir(loss))
    assert group("loss", "sft").stage == "sft" and group("loss", "sdpo").stage == "pref"
    assert group("loss", "sft").num_negatives == 0
    assert group("loss", "dpo").num_negatives == 1 and group("loss", "sdpo").num_negatives == 3
    official = instantiate(group("loss", "napo_official").objective)
    default = instantiate(group("loss", "napo").objective)
    assert (official.share, official.mask_false_negatives, official.detach_shared) == ("reuse", False, True)
    assert (official.needs_reference, official.needs_cross_logps, official.needs_sequential_model) == (
        False,
        False,
        True,
    )
    assert (default.share, default.mask_false_negatives, default.detach_shared) == ("exact", True, False)
    assert default.needs_cross_logps and not default.needs_reference
    rosepo = group("loss", "rosepo")
    assert rosepo.negatives.strategy == "mixed"
    assert set(rosepo.negatives.weights) == {"self_hard", "popularity", "hallucinated", "random"}


def test_napo_needs_flags_follow_config():
    assert NAPOLoss(share="none", gamma0=0.0).needs_sequential_model is False
    assert NAPOLoss(share="none", alpha=0.0).needs_sequential_model is False
    assert NAPOLoss(share="none").needs_sequential_model is True
    assert NAPOLoss(share="reuse", gamma0=0.0).needs_sequential_model is True
    assert NAPOLoss(use_reference=True).needs_reference is True
    assert NAPOLoss(share="reuse").needs_cross_logps is False
    assert SimPOLoss().needs_reference is False and DPOLoss(use_reference=False).needs_reference is False
