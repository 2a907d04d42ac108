"""The service's own log on standard error: the router loaded, each reload's steps, load failures,
missing endpoints.

``llmroute serve`` sends it there in its own process (:func:`log_to_stderr`); with ``--workers N``
uvicorn starts each worker as a fresh interpreter, which calls it again from its app factory, so the
workers' reload lines (the steps a promotion took in each of them) are visible too.
"""

from __future__ import annotations

import logging

LOGGER = "llmroute"


def log_to_stderr() -> None:
    """Send the ``llmroute`` logger's records at INFO and above to standard error, prefixed ``llmroute:``,
    whatever uvicorn's ``--log-level``. Idempotent: at most one such handler per process."""
    logger = logging.getLogger(LOGGER)
    if any(getattr(h, "_llmroute_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("llmroute: %(message)s"))
    handler._llmroute_cli = True  # type: ignore[attr-defined]  # our mark on a stdlib handler
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
