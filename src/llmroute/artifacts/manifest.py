"""A checksum manifest for a saved router folder, and its verification.

Before a router is logged to MLflow its folder gets ``manifest.json``: the sha256 of every file.
Every load verifies the manifest first (:mod:`llmroute.artifacts.loading`), so a truncated or altered artifact
gives an error naming the file instead of a LightGBM parse error (or, worse, different decisions).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmroute.router.embedder import Embedder

MANIFEST = "manifest.json"


class DamagedArtifactError(RuntimeError):
    """A router folder is incomplete, altered or unreadable."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> dict[str, str]:
    """Write ``manifest.json`` (relative path -> sha256 of every other file) and return it."""
    files = {
        p.relative_to(folder).as_posix(): file_sha256(p)
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
        if file_sha256(path) != digest:
            raise DamagedArtifactError(
                f"{label}: the router artifact is damaged: {rel} does not match its recorded sha256"
            )


def reusable(embedder: Embedder | None, recorded: Mapping[str, Any]) -> bool:
    """True when ``embedder`` is the embedder ``recorded`` (router.json's ``embedder``: spec and fingerprint)."""
    return (
        embedder is not None
        and getattr(embedder, "spec", None) == recorded.get("spec")
        and getattr(embedder, "fingerprint", None) == recorded.get("fingerprint")
    )
