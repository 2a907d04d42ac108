"""Load a router from a saved folder or a registry URI (blocking: call it off an event loop)."""

from __future__ import annotations

from pathlib import Path

from llmroute.config import Settings
from llmroute.router.embedder import Embedder
from llmroute.router.router import Router

REGISTRY_PREFIX = "models:/"


class RouterLoadError(FileNotFoundError):
    """The named router cannot be found; the message names it and says why."""


def load_router(model: str, core: Settings, reuse: Embedder | None = None) -> Router:
    """The router at ``model``: a saved router folder or ``models:/<name>@<alias>`` (or ``/<version>``).
    ``reuse``: an embedder already loaded, used when it is the one the router records (spec and
    fingerprint), instead of loading that embedder again."""
    if model.startswith(REGISTRY_PREFIX):
        from llmroute.training.registry import load_served_uri  # lazy: pulls in mlflow

        return load_served_uri(model, core, with_scorer=False, reuse=reuse)[0]
    from llmroute.router.embedder import load_embedder
    from llmroute.router.router import read_router_meta

    folder = Path(model).expanduser()
    if not (folder / "router.json").is_file():
        raise RouterLoadError(f"{folder} is not a saved router folder (no router.json)")
    from llmroute.training.manifest import reusable

    meta = read_router_meta(folder)
    embedder = reuse if reusable(reuse, meta["embedder"]) else load_embedder(meta["embedder"]["spec"], core.embedders_dir)
    return Router.load(folder, embedder)  # type: ignore[arg-type]
