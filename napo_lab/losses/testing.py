"""Builders for small hand-made ``LossInputs`` (used by the loss tests; handy in other rooms' tests)."""

from __future__ import annotations

import math

import torch

from napo_lab.losses.base import LossInputs

LN2, LN3 = math.log(2.0), math.log(3.0)


def softplus(x: float) -> float:
    """``log(1 + e^x)`` in plain Python, so expected values never go through torch."""
    return math.log1p(math.exp(x))


def make_inputs(
    policy, ref=None, lengths=None, mask=None, dtype: torch.dtype = torch.float64, **extra
) -> LossInputs:
    """LossInputs from nested lists; ``policy_logps`` is a leaf with ``requires_grad``.

    ``lengths`` defaults to ones and ``mask`` to all-valid. ``extra`` passes further fields (tensors
    or nested lists; float lists take ``dtype``, int lists become LongTensors).
    """
    p = torch.tensor(policy, dtype=dtype, requires_grad=True)
    fields = {}
    for key, value in extra.items():
        if value is not None and not isinstance(value, torch.Tensor):
            value = torch.tensor(value)
            if value.is_floating_point():
                value = value.to(dtype)
        fields[key] = value
    return LossInputs(
        policy_logps=p,
        lengths=torch.ones_like(p, dtype=torch.long) if lengths is None else torch.tensor(lengths),
        mask=torch.ones(p.shape, dtype=torch.bool) if mask is None else torch.tensor(mask, dtype=torch.bool),
        ref_logps=None if ref is None else torch.tensor(ref, dtype=dtype),
        **fields,
    )
