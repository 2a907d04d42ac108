"""Load the served router and its response scorer from a folder or a registry URI (blocking: call it off
the event loop); :mod:`llmroute.training.loading` loads routers for every command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmroute.config import Settings
from llmroute.router.embedder import Embedder
from llmroute.router.router import Router
from llmroute.training.loading import REGISTRY_PREFIX, load_router

if TYPE_CHECKING:
    from llmroute.router.answer_scorer import ResponseScorer


def source_version(model: str, core: Settings) -> str:
    """The router version ``model`` points at now, without loading it (for reload polling)."""
    if model.startswith(REGISTRY_PREFIX):
        from llmroute.training.registry import parse_model_uri, registry_client, resolve_version

        ref = parse_model_uri(model)
        with registry_client(core, f"resolving {model}") as (client, tracking):
            return f"{ref.name}/{resolve_version(client, ref, tracking).version}"
    from llmroute.router.router import read_router_meta

    return str(read_router_meta(Path(model).expanduser())["version"])


def load_served(model: str, core: Settings, with_scorer: bool = True,
                reuse: Embedder | None = None) -> tuple[Router, ResponseScorer | None]:
    """The router at ``model`` and, when ``with_scorer``, its response scorer: a folder's ``scorer/``,
    or the ``scorer/`` registered inside the router artifact (None when there is none). ``reuse``: the
    embedder serving now; a new version trained with the same embedder shares it (a reload then loads
    only the models, not the embedder again)."""
    if model.startswith(REGISTRY_PREFIX):
        from llmroute.training.registry import load_served_uri  # lazy: pulls in mlflow

        return load_served_uri(model, core, with_scorer, reuse)
    from llmroute.training.scorer import scorer_in

    router = load_router(model, core, reuse)
    return router, (scorer_in(Path(model), router.embedder) if with_scorer else None)
