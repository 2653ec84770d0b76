"""A quiet terminal: each log line once, no library nags (``debug=true`` keeps everything).

Lightning gives its loggers their own console handler, so under Hydra (which logs to the root logger)
every Lightning INFO line was printed twice; its litlogger tip, the libraries' FutureWarnings and
deprecation notices and Optuna's alembic lines say nothing about the run.
"""

from __future__ import annotations

import logging
import warnings

_NAGS = ("litlogger", "LitLogger")


class _DropNags(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(n in message for n in _NAGS)


def quiet_libraries(debug: bool = False) -> None:
    """Route Lightning's log lines through the root logger only, drop its tips and library warnings."""
    root_has_handler = bool(logging.getLogger().handlers)
    if root_has_handler:
        import lightning.pytorch  # noqa: F401 - adds its console handler on import: import it, then remove it
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
        logger = logging.getLogger(name)
        if root_has_handler:  # Hydra (or the caller) prints the root logger: Lightning's own copy goes
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNags) for f in logger.filters):
            logger.addFilter(_DropNags())
    for name in ("alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if debug:
        return
    # Raised by libraries about their own future (transformers, torch, lightning): not the user's to fix.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # frozen base model, on purpose
    try:
        from optuna.exceptions import ExperimentalWarning

        warnings.filterwarnings("ignore", category=ExperimentalWarning)
    except ImportError:
        pass
