"""PreferDiff: a diffusion recommender over item embeddings with a preference loss (ICLR 2025).

    model, info = train_preferdiff(prepared, cfg)   # cfg: conf/model/preferdiff.yaml keys
    model.scores(history)                           # [B, n_items], one DDIM sample per row
"""

from napo_lab.models.preferdiff.config import PreferDiffConfig
from napo_lab.models.preferdiff.diffusion import DDIMSampler, DiffusionSchedule, SinusoidalTime
from napo_lab.models.preferdiff.loss import in_batch_centroids, preferdiff_loss, reconstruction_error
from napo_lab.models.preferdiff.model import PreferDiff
from napo_lab.models.preferdiff.train import build_preferdiff, train_preferdiff

__all__ = [
    "DDIMSampler",
    "DiffusionSchedule",
    "PreferDiff",
    "PreferDiffConfig",
    "SinusoidalTime",
    "build_preferdiff",
    "in_batch_centroids",
    "preferdiff_loss",
    "reconstruction_error",
    "train_preferdiff",
]
