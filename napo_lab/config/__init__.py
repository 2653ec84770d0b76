"""Config schemas (one dataclass per group) and the checker that lists every problem at once.

The validation that ties the schemas to the implementations (a loss's options, a builder's splits,
the Trainer's arguments) is ``napo_lab.recipe.validate``: it runs before any data or model loads.
"""

from napo_lab.config.check import Checker, spec
from napo_lab.errors import ConfigError

__all__ = ["Checker", "ConfigError", "spec"]
