"""napo_lab: preference optimisation for LLM-based sequential recommenders (Hydra + Lightning)."""

from pathlib import Path

__version__ = "0.1.0"

#: The Hydra config tree shipped with the repository (napo_lab/../conf).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
