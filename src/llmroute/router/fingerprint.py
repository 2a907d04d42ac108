"""The content fingerprint of an embedder's files: what a saved router records to recognise its embedder, and
the error when the embedder at hand is another one (light: no NumPy, so a loader can name it before loading)."""

from __future__ import annotations

import hashlib
from pathlib import Path


class EmbedderMismatchError(RuntimeError):
    """The embedder at hand is not the one a router was trained with."""


def fingerprint_dir(path: Path) -> str:
    """sha256 over the relative names and contents of every file below ``path`` (sorted)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith(".") or "__pycache__" in rel or rel == "README.md":
            continue
        h.update(rel.encode())
        h.update(b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]
