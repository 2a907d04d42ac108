"""Where the MLflow store is, and a session pointed at it: the one place that knows how to reach it.

The store is, in order: ``Settings.tracking_uri`` (``LLMROUTE_TRACKING_URI``), ``MLFLOW_TRACKING_URI``,
else a local SQLite file ``<home>/mlflow.db`` with artifacts under ``<home>/mlartifacts``, created on
first use. For a SQLite store the experiment is created with its artifact location next to the database,
so nothing lands in the working directory (MLflow's own default, ``./mlruns``).

Training logs runs into it (:mod:`llmroute.training.tracking`), A/B tests log reports
(:mod:`llmroute.abtest.tracking`) and every router loader reads the registry through it
(:mod:`llmroute.artifacts.registry`). mlflow is imported inside the functions that use it, so importing
this module costs nothing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from llmroute.config import Settings

EXPERIMENT = "llmroute"
CHALLENGER = "challenger"
CHAMPION = "champion"
# Fail fast against a tracking server that does not answer (MLflow's defaults retry for minutes).
QUICK_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class TrackingError(RuntimeError):
    """The tracking store could not record a run (named in the message)."""


def resolve_tracking_uri(settings: Settings) -> str:
    """Explicit setting, else ``MLFLOW_TRACKING_URI``, else the SQLite store under ``settings.home``."""
    if settings.tracking_uri:
        return settings.tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(settings.home / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores)."""
    if not uri.startswith("sqlite:"):
        return None
    return Path(unquote(urlparse(uri).path))


def artifact_root(uri: str) -> Path | None:
    """Where a local SQLite store keeps artifacts: ``mlartifacts`` next to the database file."""
    db = sqlite_path(uri)
    return None if db is None else db.parent / "mlartifacts"


@contextmanager
def mlflow_session(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` (tracking and registry) and restore the previous state after.

    HTTP requests fail fast inside the block (one immediate retry, a 30 s timeout; values already set in
    the environment win), so an unreachable server is reported in seconds, not after minutes of back-off.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with warnings.catch_warnings():
        # MLflow's own request types warn about their `Any` hints while mlflow.pyfunc is first imported
        warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType", category=UserWarning)
        import mlflow.pyfunc
    names = (*QUICK_HTTP, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    saved_env = {k: os.environ.get(k) for k in names}
    # what MLflow held (None: nothing set, so restoring None puts it back on its default)
    saved_tracking: Any = getattr(tracking_utils, "_tracking_uri", None)
    saved_registry: Any = getattr(registry_utils, "_registry_uri", None)
    for k, v in QUICK_HTTP.items():
        os.environ.setdefault(k, v)  # a value the user set wins
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
        for name, saved in saved_env.items():
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved


def ensure_experiment(uri: str) -> str:
    """Id of the ``llmroute`` experiment, created on first use (inside :func:`mlflow_session`).

    In a SQLite store it is created with its artifacts in ``mlartifacts`` next to the database (an
    experiment that already exists keeps the location it was created with).
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return str(exp.experiment_id)
    root = artifact_root(uri)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        return str(client.create_experiment(EXPERIMENT, artifact_location=root.resolve().as_uri()))
    return str(client.create_experiment(EXPERIMENT))
