"""Errors a person can fix, and how they are shown: one short paragraph naming the fix, exit code 2.

Every error napo_lab raises for bad input derives from :class:`UserError`; the room that detects it
defines a subclass (``ConfigError`` here, ``DataError`` in data/, ``ModelLoadError`` in models/,
``CheckpointError`` in lit/). Anything else is unexpected: exit code 1 and a hint to rerun with
``debug=true``, which prints the full traceback in both cases.
"""

from __future__ import annotations

import logging
import sys
import traceback

log = logging.getLogger("napo_lab")


class UserError(Exception):
    """Bad input: the message alone must say what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """The composed config is invalid; the message lists every problem, its key and what it accepts."""


KNOWN: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, FloatingPointError)


def report_error(err: BaseException, debug: bool = False) -> int:
    """Print the error for a person; return the exit code (2 = bad input, 1 = unexpected)."""
    known = isinstance(err, KNOWN)
    if debug:
        traceback.print_exception(err)
    elif known:
        print(f"napo_lab: {err}", file=sys.stderr)
    else:
        print(f"napo_lab: unexpected {type(err).__name__}: {err}\n(rerun with debug=true for the full traceback)",
              file=sys.stderr)
    return 2 if known else 1
