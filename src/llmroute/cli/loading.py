"""The router (and answer scorer) of a command's ``--model``: a saved router folder, ``models:/<name>@<alias>``
or ``models:/<name>/<version>`` from the registry, or by default the most recently trained router.

Rule: a ``--model`` that cannot be loaded ends the command with exit code 2 and an ``error:`` line that says
why (no such folder, not a saved router, an unknown registry alias, a different embedder). MLflow and the
models are imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmroute.cli.options import fail

if TYPE_CHECKING:
    from llmroute.config import Settings
    from llmroute.router.answer_scorer import ResponseScorer
    from llmroute.router.router import Router


def load_registry_router(settings: Settings, uri: str) -> Router:
    """``--model models:/<name>@<alias>`` or ``models:/<name>/<version>``: the router from the registry."""
    from llmroute.router.embedder import EmbedderMismatchError
    from llmroute.training.registry import RegistryError, load_router_uri

    try:
        return load_router_uri(uri, settings)
    except (RegistryError, EmbedderMismatchError) as exc:
        fail(str(exc))


def load_router_or_exit(settings: Settings, model: str | Path | None) -> Router:
    """The router ``model`` names (a folder or a registry URI; None: the latest trained), or exit 2."""
    if isinstance(model, str) and model.startswith("models:/"):
        return load_registry_router(settings, model)
    if model:
        folder = Path(model)
    else:
        from llmroute.training.train import latest_router_dir

        try:
            folder = latest_router_dir(settings)
        except FileNotFoundError as exc:
            fail(str(exc))
    if not (folder / "router.json").exists():
        fail(f"{folder} is not a saved router (no router.json)")
    from llmroute.router.embedder import EmbedderMismatchError, load_embedder
    from llmroute.router.router import Router, read_router_meta

    meta = read_router_meta(folder)
    embedder = load_embedder(meta["embedder"]["spec"], settings.embedders_dir)
    try:
        return Router.load(folder, embedder)
    except EmbedderMismatchError as exc:
        fail(str(exc))


def load_router_and_scorer_or_exit(settings: Settings, model: str | None) -> tuple[Router, ResponseScorer | None]:
    """The router and the answer scorer saved (or registered) with it (None when it has none), or exit 2."""
    from llmroute.router.answer_scorer import scorer_in
    from llmroute.router.embedder import EmbedderMismatchError

    if isinstance(model, str) and model.startswith("models:/"):
        from llmroute.training.registry import RegistryError, load_served_uri

        try:
            return load_served_uri(model, settings, with_scorer=True)
        except (RegistryError, EmbedderMismatchError) as exc:
            fail(str(exc))
    router = load_router_or_exit(settings, model)
    from llmroute.training.train import latest_router_dir

    folder = Path(model) if model else latest_router_dir(settings)
    return router, scorer_in(folder, router.embedder)
