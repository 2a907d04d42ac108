"""The embedder on a Dask worker: loaded once per worker process, whichever training step asks for it (the
prompt tables of :mod:`llmroute.training.dask_backend` and the answer scorer's parts of
:mod:`llmroute.training.dask_scorer` share the one instance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_LOADED: dict[str, Any] = {}


def worker_embedder(spec: str, embedders_dir: str) -> Any:
    """The embedder ``spec`` (from ``embedders_dir``), loaded on the first call in this process and reused after."""
    key = f"{spec}\0{embedders_dir}"
    if key not in _LOADED:
        from llmroute.router.embedder import load_embedder

        _LOADED[key] = load_embedder(spec, Path(embedders_dir))
    return _LOADED[key]
