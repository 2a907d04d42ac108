"""Loading a router: the one loader of every command, the service, the reload check and the A/B arms.

Blocking (files, LightGBM, maybe the registry): call it off an event loop. A *source* is one of

* a saved router folder (a directory with ``router.json``);
* ``LATEST`` (or None / empty): the router the last ``llmroute train`` saved, named by the ``LATEST``
  pointer under ``<home>/routers``;
* ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: a version in the router registry.

Guarantees, whatever the source:

* **Checksums are always verified** before anything is parsed: a folder with ``manifest.json`` (every
  registered artifact has one; ``llmroute train`` writes one) has every file's sha256 checked; a folder
  without one (a hand-copied router) must at least hold ``router.json``.
* The embedder named in ``router.json`` is loaded and its fingerprint must match the router's.
* A registry router's version is ``<name>/<version>`` (what the decision log records).
* The answer scorer saved with the router (its ``scorer/`` folder, under the same checksums) is loaded
  when asked for, sharing the router's embedder; None when the router has none.

**The one fallback rule**: no source (None, ``""`` or ``LATEST``) means the latest trained router. A
source that is named and cannot be loaded is an error; it is never replaced by another router. (Callers
that keep an old router when a new one fails, like the service's hot reload, decide that themselves.)

Errors (all in :data:`LOAD_ERRORS`, each message naming the source): :class:`RouterLoadError` (a
``FileNotFoundError``: nothing saved there), :class:`~llmroute.artifacts.manifest.DamagedArtifactError`,
:class:`~llmroute.router.embedder.EmbedderMismatchError`,
:class:`~llmroute.artifacts.registry.RegistryError` (the registry, and any failure of a registry artifact).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmroute.artifacts.manifest import DamagedArtifactError, reusable, verify_manifest
from llmroute.artifacts.registry import (
    RegistryError,
    parse_model_uri,
    registry_client,
    resolve_version,
    router_folder,
    unreachable,
)
from llmroute.config import Settings
from llmroute.router.fingerprint import EmbedderMismatchError

if TYPE_CHECKING:
    from llmroute.router.answer_scorer import ResponseScorer
    from llmroute.router.embedder import Embedder
    from llmroute.router.router import Router

REGISTRY_PREFIX = "models:/"
LATEST = "LATEST"

EmbedderFor = Callable[[Mapping[str, Any]], "Embedder"]
"""Builds the embedder of a router from ``router.json``'s ``embedder`` entry (spec, fingerprint). The
default loads the real one (:func:`llmroute.router.embedder.load_embedder`); the reload check passes a
stand-in so that no embedding weights are loaded in its child process."""


class RouterLoadError(FileNotFoundError):
    """Nothing is saved at the named source; the message names it and says why."""


LOAD_ERRORS: tuple[type[Exception], ...] = (RouterLoadError, DamagedArtifactError, EmbedderMismatchError, RegistryError)
"""Every error :func:`load_router` and :func:`load_served` raise for a source that cannot be loaded."""


def is_registry_uri(source: str | Path | None) -> bool:
    """Whether ``source`` names a registry version (``models:/...``)."""
    return isinstance(source, str) and source.startswith(REGISTRY_PREFIX)


def latest_router_dir(settings: Settings) -> Path:
    """Folder of the most recently trained router (:class:`RouterLoadError` if none was trained)."""
    pointer = settings.routers_dir / LATEST
    if not pointer.exists():
        raise RouterLoadError(f"no trained router under {settings.routers_dir}: run `llmroute train` first")
    return Path(pointer.read_text().strip())


def resolve_folder(source: str | Path | None, settings: Settings) -> Path:
    """The folder a non-registry source names: the source itself, or the latest trained router's folder
    for None, ``""`` or ``LATEST`` (the fallback rule above)."""
    if source is None or str(source) in ("", LATEST):
        return latest_router_dir(settings)
    return Path(source).expanduser()


def load_router(
    source: str | Path | None,
    settings: Settings,
    *,
    embedder_for: EmbedderFor | None = None,
    reuse: Embedder | None = None,
) -> Router:
    """The router at ``source`` (see the module docstring for sources, checks and errors)."""
    return load_served(source, settings, with_scorer=False, embedder_for=embedder_for, reuse=reuse)[0]


def load_served(
    source: str | Path | None,
    settings: Settings,
    with_scorer: bool = True,
    *,
    embedder_for: EmbedderFor | None = None,
    reuse: Embedder | None = None,
) -> tuple[Router, ResponseScorer | None]:
    """The router at ``source`` and, when ``with_scorer``, the answer scorer saved with it (None when it
    has none). Same checks and errors as :func:`load_router`. ``reuse``: an embedder already loaded (the
    one serving now), used instead of loading the router's when its spec and fingerprint are the ones
    router.json records, so a reload loads only the models."""
    if is_registry_uri(source):
        assert isinstance(source, str)
        with tempfile.TemporaryDirectory(prefix="llmroute-model-") as tmp:
            got = download_version(source, settings, Path(tmp))
            return load_downloaded(got, settings, with_scorer, embedder_for=embedder_for, reuse=reuse)
    folder = resolve_folder(source, settings)
    if not (folder / "router.json").is_file():
        raise RouterLoadError(f"{folder} is not a saved router folder (no router.json)")
    label = str(folder)
    router = load_verified_router(folder, settings.embedders_dir, label, embedder_for, reuse=reuse)
    return router, (_scorer(folder, router, label) if with_scorer else None)


def load_verified_router(
    folder: Path,
    embedders_dir: Path,
    label: str,
    embedder_for: EmbedderFor | None = None,
    *,
    reuse: Embedder | None = None,
) -> Router:
    """Verify ``folder``'s checksums, build the embedder named in router.json (or take ``reuse`` when it is
    that embedder) and load the router (fingerprint checked). Raises :class:`DamagedArtifactError` or
    :class:`EmbedderMismatchError`, both naming ``label``."""
    from llmroute.router.embedder import load_embedder  # lazy, as Router: NumPy, LightGBM and pandas are
    from llmroute.router.router import Router  # not needed to reject a source that is not a router

    verify_manifest(folder, label)
    try:
        entry = json.loads((folder / "router.json").read_text())["embedder"]
        spec = entry["spec"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedArtifactError(f"{label}: the router artifact is damaged: router.json is unreadable ({exc})") from exc
    if reusable(reuse, entry):
        assert reuse is not None
        embedder = reuse
    elif embedder_for is not None:
        embedder = embedder_for(entry)
    else:
        embedder = load_embedder(spec, embedders_dir)
    try:
        return Router.load(folder, embedder)
    except EmbedderMismatchError as exc:
        raise EmbedderMismatchError(f"{label}: {exc}") from exc
    except Exception as exc:  # LightGBM, NumPy and YAML each raise their own errors
        raise DamagedArtifactError(
            f"{label}: the router artifact is damaged or was written by an incompatible llmroute version: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _scorer(folder: Path, router: Router, label: str) -> ResponseScorer | None:
    """The scorer in an (already checksum-verified) router folder, read into memory."""
    from llmroute.router.answer_scorer import scorer_in  # lazy: LightGBM

    try:
        return scorer_in(folder, router.embedder)
    except Exception as exc:  # LightGBM, NumPy and JSON each raise their own errors
        raise DamagedArtifactError(
            f"{label}: the response scorer in the artifact cannot be loaded: {type(exc).__name__}: {exc}"
        ) from exc


@dataclass(frozen=True)
class DownloadedVersion:
    """A registry version's router artifact on local disk: ``folder`` (holding router.json), the
    version's name ``<name>/<version>`` and a ``label`` naming it for messages."""

    folder: Path
    version: str
    label: str


def download_version(uri: str, settings: Settings, dst: Path) -> DownloadedVersion:
    """Download the router artifact of the version ``uri`` names into ``dst`` (not yet verified: see
    :func:`load_downloaded`); failures are :class:`RegistryError` naming the URI, the version and the store."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    ref = parse_model_uri(uri)
    with registry_client(settings, f"loading {uri}") as (client, tracking):
        mv = resolve_version(client, ref, tracking)
        label = f"{uri} (version {mv.version} of '{ref.name}' in {tracking})"
        try:
            local = download_artifacts(
                artifact_uri=f"models:/{ref.name}/{mv.version}", dst_path=str(dst), tracking_uri=tracking
            )
        except (OSError, MlflowException) as exc:
            text = getattr(exc, "message", str(exc))
            if unreachable(text):
                raise
            raise RegistryError(f"{label}: the model artifact cannot be downloaded: {text}") from exc
    return DownloadedVersion(router_folder(Path(local)), f"{ref.name}/{mv.version}", label)


def load_downloaded(
    got: DownloadedVersion,
    settings: Settings,
    with_scorer: bool = True,
    *,
    embedder_for: EmbedderFor | None = None,
    reuse: Embedder | None = None,
) -> tuple[Router, ResponseScorer | None]:
    """The router of a :func:`download_version` folder (checksums verified, version ``<name>/<version>``)
    and, when ``with_scorer``, its registered scorer; any failure of the artifact is a :class:`RegistryError`."""
    try:
        router = load_verified_router(got.folder, settings.embedders_dir, got.label, embedder_for, reuse=reuse)
        scorer = _scorer(got.folder, router, got.label) if with_scorer else None
    except DamagedArtifactError as exc:
        raise RegistryError(str(exc)) from exc
    return router.with_version(got.version), scorer


def source_version(source: str | Path | None, settings: Settings) -> str:
    """The router version ``source`` points at now, without loading it (``<name>/<version>`` for a
    registry URI; the folder's ``router.json`` version otherwise). For reload polling."""
    if is_registry_uri(source):
        assert isinstance(source, str)
        ref = parse_model_uri(source)
        with registry_client(settings, f"resolving {source}") as (client, tracking):
            return f"{ref.name}/{resolve_version(client, ref, tracking).version}"
    from llmroute.router.router import read_router_meta

    return str(read_router_meta(resolve_folder(source, settings))["version"])
