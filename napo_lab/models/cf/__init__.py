"""Non-sequential recommenders trained with BPR on a rating-based protocol (napo_lab.data.ratings):
BPR-MF and LightGCN, with a uniform or Triplet Shapley triplet sampler (napo_lab.shapley)."""

from napo_lab.models.cf.models import BPRMF, CFModel, LightGCN, graph_adjacency
from napo_lab.models.cf.train import CFConfig, NegativeSampler, SamplerConfig, build_cf, evaluate_cf, train_cf

__all__ = ["BPRMF", "CFConfig", "CFModel", "LightGCN", "NegativeSampler", "SamplerConfig", "build_cf",
           "evaluate_cf", "graph_adjacency", "train_cf"]
