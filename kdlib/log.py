"""kdlib's one logger (``kdlib``), and how the CLI and notebooks show it.

Library code logs to ``logging.getLogger("kdlib.<module>")``; nothing is printed unless a
caller shows it. The CLI and the notebooks call :func:`show` once: lines go to stderr,
which papermill streams to the terminal with ``--log-output``.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("kdlib")
_FORMAT = "%(asctime)s kdlib: %(message)s"
_HANDLER = "kdlib"  # the name of the handler show() adds, so that it adds one only


def show(level: int = logging.INFO) -> None:
    """Print kdlib's log lines at ``level`` and above to stderr (idempotent)."""
    logger.setLevel(level)
    if not any(h.get_name() == _HANDLER for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        handler.set_name(_HANDLER)
        logger.addHandler(handler)
    logger.propagate = False


def get(name: str) -> logging.Logger:
    """The logger of one kdlib module, e.g. ``get(__name__)``."""
    return logging.getLogger(name if name.startswith("kdlib") else f"kdlib.{name}")
