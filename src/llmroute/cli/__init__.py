"""The ``llmroute`` command line: a package of one module per command group.

``root`` builds the Typer ``app`` (the top-level callback and the train, evaluate and route commands) and
registers every group with its ``register(app)``; ``options`` holds what the commands share (``--home``,
``--quiet``, settings loading, the error exit, JSON output) and ``loading`` the router loading of the
commands that take ``--model``. Heavy libraries are imported inside the command bodies only, so importing
this package and any ``--help`` load none of them (tests/cli/test_startup.py checks it).
"""

from __future__ import annotations

from llmroute.cli.root import app, main

__all__ = ["app", "main"]
