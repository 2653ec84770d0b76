"""The recipe layer: validation, builders, stages and the run itself (recipe.py, read it first)."""

from napo_lab.recipe.recipe import evaluate_only, train_and_evaluate

__all__ = ["evaluate_only", "train_and_evaluate"]
