"""Turning failures into one short paragraph that names the fix (tracebacks only with debug=true)."""

from __future__ import annotations

import logging
import sys
import traceback

log = logging.getLogger("napo_lab")


def _known() -> tuple[type[BaseException], ...]:
    from napo_lab.checks import ConfigError
    from napo_lab.data.prepared import DataError
    from napo_lab.lit.checkpoint import CheckpointError
    from napo_lab.models.llm import ModelLoadError

    return (ConfigError, DataError, ModelLoadError, CheckpointError, FileNotFoundError, FloatingPointError)


def report_error(err: BaseException, debug: bool = False) -> int:
    """Print the error for a person; return the exit code (2 = bad input, 1 = unexpected)."""
    known = isinstance(err, _known())
    if debug:
        traceback.print_exception(err)
    elif known:
        print(f"napo_lab: {err}", file=sys.stderr)
    else:
        print(f"napo_lab: unexpected {type(err).__name__}: {err}\n(rerun with debug=true for the full traceback)",
              file=sys.stderr)
    return 2 if known else 1
