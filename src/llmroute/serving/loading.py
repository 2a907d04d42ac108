"""Load the served router from a folder or a registry URI (blocking: call it off the event loop)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmroute.config import Settings
from llmroute.router.router import Router

if TYPE_CHECKING:
    from llmroute.training.scorer import ResponseScorer

REGISTRY_PREFIX = "models:/"


class RouterLoadError(RuntimeError):
    """The configured model cannot be loaded; the message names it and says why."""


def load_router(model: str, core: Settings) -> Router:
    """The router at ``model``: a saved router folder or ``models:/<name>@<alias>`` (or ``/<version>``)."""
    if model.startswith(REGISTRY_PREFIX):
        from llmroute.training.registry import load_router_uri  # lazy: pulls in mlflow

        return load_router_uri(model, core)
    from llmroute.router.embedder import load_embedder
    from llmroute.router.router import read_router_meta

    folder = Path(model).expanduser()
    if not (folder / "router.json").is_file():
        raise RouterLoadError(f"{folder} is not a saved router folder (no router.json)")
    meta = read_router_meta(folder)
    return Router.load(folder, load_embedder(meta["embedder"]["spec"], core.embedders_dir))


def source_version(model: str, core: Settings) -> str:
    """The router version ``model`` points at now, without loading it (for reload polling)."""
    if model.startswith(REGISTRY_PREFIX):
        from llmroute.training.registry import parse_model_uri, registry_client, resolve_version

        ref = parse_model_uri(model)
        with registry_client(core, f"resolving {model}") as (client, tracking):
            return f"{ref.name}/{resolve_version(client, ref, tracking).version}"
    from llmroute.router.router import read_router_meta

    return str(read_router_meta(Path(model).expanduser())["version"])


def load_scorer(folder: Path, router: Router) -> ResponseScorer | None:
    """The response scorer saved in ``<router folder>/scorer`` (with the router's embedder), or None."""
    from llmroute.training.scorer import SCORER_DIR, ResponseScorer

    scorer_dir = Path(folder).expanduser() / SCORER_DIR
    if not (scorer_dir / "scorer.json").is_file():
        return None
    return ResponseScorer.load(scorer_dir, router.embedder)


def load_served(model: str, core: Settings, with_scorer: bool = True) -> tuple[Router, ResponseScorer | None]:
    """The router at ``model`` and, when ``with_scorer``, its response scorer: a folder's ``scorer/``,
    or the ``scorer/`` registered inside the router artifact (None when there is none)."""
    if model.startswith(REGISTRY_PREFIX):
        from llmroute.training.registry import load_served_uri  # lazy: pulls in mlflow

        return load_served_uri(model, core, with_scorer)
    router = load_router(model, core)
    return router, (load_scorer(Path(model), router) if with_scorer else None)
