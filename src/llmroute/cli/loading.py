"""The router (and answer scorer) of a command's ``--model``: a saved router folder, ``LATEST``,
``models:/<name>@<alias>`` or ``models:/<name>/<version>`` from the registry, or by default the most recently
trained router, loaded by :mod:`llmroute.artifacts.loading` (checksums verified first).

Rule: a ``--model`` that cannot be loaded ends the command with exit code 2 and an ``error:`` line that says
why (no such folder, not a saved router, a damaged file, an unknown registry alias, a different embedder).
MLflow and the models are imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmroute.cli.options import fail

if TYPE_CHECKING:
    from llmroute.config import Settings
    from llmroute.router.answer_scorer import ResponseScorer
    from llmroute.router.router import Router


def load_router_or_exit(settings: Settings, model: str | Path | None) -> Router:
    """The router ``model`` names (a folder, ``LATEST`` or a registry URI; None: the latest trained), or exit 2."""
    return load_router_and_scorer_or_exit(settings, model, with_scorer=False)[0]


def load_router_and_scorer_or_exit(
    settings: Settings, model: str | Path | None, with_scorer: bool = True
) -> tuple[Router, ResponseScorer | None]:
    """The router and, when ``with_scorer``, the answer scorer saved (or registered) with it (None when it has
    none), or exit 2."""
    from llmroute.artifacts.loading import LOAD_ERRORS, load_served

    try:
        return load_served(model, settings, with_scorer)
    except LOAD_ERRORS as exc:
        fail(str(exc))
