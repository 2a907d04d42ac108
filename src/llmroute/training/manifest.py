"""A checksum manifest for a saved router folder, and loading a folder with every check applied.

Before a router is logged to MLflow its folder gets ``manifest.json``: the sha256 of every file.
Loading a router from the registry verifies the manifest first, so a truncated or altered artifact
gives an error naming the file instead of a LightGBM parse error (or, worse, different decisions).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llmroute.router.embedder import Embedder, EmbedderMismatchError, load_embedder
from llmroute.router.router import Router

MANIFEST = "manifest.json"


class DamagedArtifactError(RuntimeError):
    """A router folder is incomplete, altered or unreadable."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> dict[str, str]:
    """Write ``manifest.json`` (relative path -> sha256 of every other file) and return it."""
    files = {
        p.relative_to(folder).as_posix(): _sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"sha256": files}, indent=1))
    return files


def verify_manifest(folder: Path, label: str) -> None:
    """Raise :class:`DamagedArtifactError` naming ``label`` and the file when a file is missing or altered.

    A folder without a manifest (a router saved by ``llmroute train`` but never logged) is only
    checked for ``router.json``.
    """
    if not (folder / "router.json").is_file():
        raise DamagedArtifactError(f"{label}: the router artifact is damaged: router.json is missing")
    mf = folder / MANIFEST
    if not mf.exists():
        return
    try:
        expected = json.loads(mf.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedArtifactError(f"{label}: the router artifact is damaged: {MANIFEST} is unreadable ({exc})") from exc
    for rel, digest in expected.items():
        path = folder / rel
        if not path.is_file():
            raise DamagedArtifactError(f"{label}: the router artifact is damaged: {rel} is missing")
        if _sha256(path) != digest:
            raise DamagedArtifactError(
                f"{label}: the router artifact is damaged: {rel} does not match its recorded sha256"
            )


def load_verified_router(folder: Path, embedders_dir: Path, label: str, reuse: Embedder | None = None) -> Router:
    """Verify the folder, load the embedder named in router.json and the router (fingerprint checked).
    ``reuse``: an embedder already loaded (the one serving now); used instead of loading the named one
    when its spec and fingerprint are those router.json records, so a reload does not load it again.

    Raises :class:`DamagedArtifactError` or :class:`EmbedderMismatchError`, both naming ``label``.
    """
    verify_manifest(folder, label)
    try:
        meta = json.loads((folder / "router.json").read_text())
        spec = meta["embedder"]["spec"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedArtifactError(f"{label}: the router artifact is damaged: router.json is unreadable ({exc})") from exc
    embedder = reuse if reusable(reuse, meta["embedder"]) else load_embedder(spec, embedders_dir)
    try:
        return Router.load(folder, embedder)  # type: ignore[arg-type]
    except EmbedderMismatchError as exc:
        raise EmbedderMismatchError(f"{label}: {exc}") from exc
    except Exception as exc:  # LightGBM, NumPy and YAML each raise their own errors
        raise DamagedArtifactError(
            f"{label}: the router artifact is damaged or was written by an incompatible llmroute version: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def reusable(embedder: Embedder | None, recorded: dict[str, str]) -> bool:
    """True when ``embedder`` is the embedder ``recorded`` (router.json's ``embedder``: spec and fingerprint)."""
    return (
        embedder is not None
        and getattr(embedder, "spec", None) == recorded.get("spec")
        and getattr(embedder, "fingerprint", None) == recorded.get("fingerprint")
    )
