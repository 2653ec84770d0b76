"""PreferDiff (Liu et al., ICLR 2025): next-item recommendation as conditional diffusion over item
embeddings, trained with a preference loss against in-batch negatives.

Pieces (public code: lswhim/PreferDiff, models/PreferDiff/_model.py, diffusion.py, modules.py):

* condition h: the last hidden state of a causal SASRec encoder over the history (public defaults:
  1 layer, 2 heads, dropout 0.1, 10 items). napo_lab reuses its own SASRec encoder, so that PreferDiff
  and the SASRec baseline differ only in how the next item is produced. Item embeddings are shared
  between the encoder input and the diffusion target and start as N(0, 1) vectors, as in the code's
  ``ab=iids`` mode (the noise has the same per-dimension scale).
* denoiser F(x_t, h, t) = Linear([x_t ; h ; time_mlp(t)]) -> predicted x0, a single linear layer;
  time_mlp = sinusoidal(D) -> Linear(D, 2D) -> GELU -> Linear(2D, D).
* classifier-free guidance: in training each row's h is replaced by a learned null embedding with
  probability ``p_uncond`` (0.1); at inference x0_hat = (1 + w) F(x, h, t) - w F(x, null, t).
* scores: the dot product of the sampled x0_hat with every item embedding.

Inference samples from noise, so :meth:`scores` is random unless ``noise`` is passed or
``sample_seed`` is set (then every call draws its noise from a generator seeded with it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from napo_lab.models.preferdiff.diffusion import DDIMSampler, DiffusionSchedule, SinusoidalTime
from napo_lab.models.preferdiff.loss import PreferDiffLossOutput, in_batch_centroids, preferdiff_loss
from napo_lab.models.seqrec.sasrec import SASRec


class PreferDiff(SASRec):
    arch = "preferdiff"

    def __init__(
        self,
        n_items: int,
        hidden_size: int = 64,
        max_len: int = 10,
        num_layers: int = 1,
        num_heads: int = 2,
        dropout: float = 0.1,
        timesteps: int = 2000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        ddim_step: int = 100,
        ddim_align_time: bool = False,
        guidance_w: float = 4.0,
        p_uncond: float = 0.1,
        gamma: float = 5.0,
        lam: float = 0.5,
        reduction: str = "batch",
        error: str = "cosine",
    ) -> None:
        super().__init__(n_items, hidden_size, max_len, num_layers, num_heads, dropout)
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
        if guidance_w < 0:
            raise ValueError(f"guidance w must be >= 0, got {guidance_w}")
        d = self.hidden_size
        self.null_emb = nn.Parameter(torch.randn(d))
        self.time_mlp = nn.Sequential(SinusoidalTime(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.denoiser = nn.Linear(3 * d, d)
        self.schedule = DiffusionSchedule(timesteps, beta_start, beta_end, beta_schedule)
        self.sampler = DDIMSampler(self.schedule, ddim_step, ddim_align_time)
        self.guidance_w, self.p_uncond = float(guidance_w), float(p_uncond)
        self.gamma, self.lam, self.reduction, self.error = float(gamma), float(lam), reduction, error
        self.sample_seed: int | None = None

    def reset_parameters(self) -> None:
        # N(0, 1) item and position embeddings (the public code's initialisation): the diffusion
        # target then has the noise's per-dimension scale.
        nn.init.normal_(self.item_emb.weight, std=1.0)
        nn.init.normal_(self.pos_emb.weight, std=1.0)
        with torch.no_grad():
            self.item_emb.weight[self.pad_id].zero_()

    def input_embeddings(self, seq: Tensor) -> Tensor:
        return self.item_emb(seq)  # already unit scale: no sqrt(D) factor

    # --- diffusion -------------------------------------------------------------------------------
    def denoise(self, x_t: Tensor, h: Tensor, t: Tensor) -> Tensor:
        """Predicted x0 [B, D] from the noisy x_t [B, D], condition h [B, D] and times t [B]."""
        return self.denoiser(torch.cat([x_t, h, self.time_mlp(t)], dim=-1))

    def null_condition(self, batch: int) -> Tensor:
        return self.null_emb.unsqueeze(0).expand(batch, -1)

    def drop_condition(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Replace each row of h by the null embedding with probability ``p_uncond``."""
        drop = torch.rand(h.shape[0], device=h.device, generator=generator) < self.p_uncond
        return torch.where(drop.unsqueeze(-1), self.null_condition(h.shape[0]).to(h.dtype), h)

    def training_loss(self, history: Tensor, target: Tensor) -> PreferDiffLossOutput:
        """The PreferDiff loss for one batch (B >= 2 rows: the negatives are the other rows)."""
        h = self.drop_condition(self.user_states(history))
        pos = self.item_emb(target.to(h.device).long())
        neg = in_batch_centroids(pos)
        t = torch.randint(0, self.schedule.timesteps, (pos.shape[0],), device=pos.device)
        x_pos = self.schedule.q_sample(pos, t, torch.randn_like(pos))
        x_neg = self.schedule.q_sample(neg, t, torch.randn_like(neg))
        return preferdiff_loss(pos, self.denoise(x_pos, h, t), neg, self.denoise(x_neg, h, t),
                               gamma=self.gamma, lam=self.lam, reduction=self.reduction, error=self.error)

    @torch.no_grad()
    def sample_x0(self, h: Tensor, noise: Tensor | None = None) -> Tensor:
        """DDIM with guidance from ``noise`` (default: standard normal, seeded by ``sample_seed``)."""
        if noise is None:
            gen = None
            if self.sample_seed is not None:
                gen = torch.Generator(device=h.device).manual_seed(int(self.sample_seed))
            noise = torch.randn(h.shape, generator=gen, device=h.device, dtype=h.dtype)
        null = self.null_condition(h.shape[0]).to(h.dtype)
        return self.sampler.sample(lambda x, t: self.denoise(x, h, t), lambda x, t: self.denoise(x, null, t),
                                   noise.to(h.device, h.dtype), self.guidance_w)

    # --- the SeqRecModel interface --------------------------------------------------------------
    def scores(self, history: Tensor, noise: Tensor | None = None) -> Tensor:
        """[B, n_items]: dot products of the sampled x0_hat with every item embedding."""
        x0 = self.sample_x0(self.user_states(history), noise)
        return x0 @ self.item_emb.weight[: self.n_items].T

    def candidate_scores(self, history: Tensor, candidates: Tensor, noise: Tensor | None = None) -> Tensor:
        """[B, C] scores of the given candidates (an id of -1 scores 0), from one x0_hat per row."""
        x0 = self.sample_x0(self.user_states(history), noise)
        candidates = candidates.to(x0.device).long()
        cand = self.item_emb(torch.where(candidates < 0, self.pad_id, candidates))
        return torch.einsum("bd,bcd->bc", x0, cand)
