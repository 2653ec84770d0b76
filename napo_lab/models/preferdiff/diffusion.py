"""The diffusion process of PreferDiff: a DDPM noise schedule for training and a DDIM (eta = 0)
sampler with classifier-free guidance for inference.

The denoiser predicts x0 (the target item embedding) directly, not the noise. Defaults follow the
public code (lswhim/PreferDiff, models/PreferDiff/config.yaml): T = 2000 steps, linear betas from
1e-4 to 0.02, DDIM over every 100th step (indices 0, 100, ..., 2000: 21 steps), guidance w = 4.

One detail of the public sampler is kept by default and can be switched off: at DDIM index n the
denoiser is told the time ``n * step`` while the schedule uses the cumulative alpha of step
``n * step - 1`` (and of step 0 for n = 0). The first call therefore sees t = T = 2000, a time that
training (t in 0..T-1) never draws; the sinusoidal time embedding extrapolates. ``align_time=True``
tells the denoiser the schedule's own step instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t [B, D], t [B] long) -> predicted x0 [B, D]


def make_betas(schedule: str, timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """float64 betas [T]. ``linear``: evenly spaced from beta_start to beta_end (the default);
    ``cosine``: Nichol & Dhariwal's schedule (offset s = 0.008, clipped to [1e-4, 0.9999])."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if schedule == "linear":
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if schedule == "cosine":
        s = 0.008
        x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
        abar = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
        abar = abar / abar[0]
        return (1 - abar[1:] / abar[:-1]).clamp(1e-4, 0.9999)
    raise ValueError(f"unknown beta schedule {schedule!r}; choose linear or cosine")


class DiffusionSchedule:
    """Forward process q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I) with t in 0..T-1."""

    def __init__(self, timesteps: int = 2000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 schedule: str = "linear") -> None:
        self.timesteps = int(timesteps)
        self.betas = make_betas(schedule, self.timesteps, beta_start, beta_end)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)  # abar_t, float64 [T]

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t for clean x0 [B, D] at integer times t [B] with the given standard-normal noise."""
        abar = self.alphas_cumprod.to(x0.device)[t.long()].to(x0.dtype).unsqueeze(-1)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise


class DDIMSampler:
    """Deterministic DDIM (eta = 0) over the sub-sequence of steps 0, step, 2*step, ..., T.

    At index n (from the last to 0): x0_hat = (1 + w) F(x, h, t_n) - w F(x, null, t_n), then
    x <- c1[n] * x0_hat + c2[n] * x with
        c1 = sqrt(abar_prev) - sqrt(1 - abar_prev) * sqrt(abar / (1 - abar)),  c2 = sqrt((1 - abar_prev) / (1 - abar)),
    which is x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps_hat with eps_hat implied by
    x0_hat. At n = 0, abar_prev = 1, so c1 = 1 and c2 = 0: the result is the last x0_hat.
    """

    def __init__(self, schedule: DiffusionSchedule, step: int = 100, align_time: bool = False) -> None:
        if not 1 <= step <= schedule.timesteps:
            raise ValueError(f"ddim step must be in [1, {schedule.timesteps}], got {step}")
        self.step = int(step)
        indices = list(range(0, schedule.timesteps + 1, self.step))
        schedule_steps = [max(i - 1, 0) for i in indices]
        abar = schedule.alphas_cumprod[schedule_steps]
        abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        self.coef_x0 = abar_prev.sqrt() - (1 - abar_prev).sqrt() * (abar / (1 - abar)).sqrt()
        self.coef_xt = ((1 - abar_prev) / (1 - abar)).sqrt()
        self.model_times = schedule_steps if align_time else indices
        self.num_steps = len(indices)

    @torch.no_grad()
    def sample(self, cond: Denoiser, uncond: Denoiser, noise: Tensor, w: float) -> Tensor:
        """Run the reverse process from ``noise`` [B, D]; ``cond``/``uncond`` are the denoiser with the
        user condition and with the null condition. Deterministic given ``noise``."""
        x = noise
        for n in reversed(range(self.num_steps)):
            t = torch.full((x.shape[0],), self.model_times[n], dtype=torch.long, device=x.device)
            x0_hat = cond(x, t) if w == 0 else (1.0 + w) * cond(x, t) - w * uncond(x, t)
            x = self.coef_x0[n].to(x.dtype) * x0_hat + self.coef_xt[n].to(x.dtype) * x
        return x


class SinusoidalTime(torch.nn.Module):
    """Transformer-style sinusoidal embedding of an integer time [B] -> [B, dim] (dim even):
    frequencies exp(-log(10000) * k / (dim/2 - 1)), sines then cosines."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"the time embedding needs an even size >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        angles = t.float().unsqueeze(-1) * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)
