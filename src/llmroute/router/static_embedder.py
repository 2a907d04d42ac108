"""A static (model2vec-style) sentence-transformers model, run with NumPy alone.

A static model is a tokenizer and one embedding row per token: a text's vector is the mean of its
tokens' rows, L2-normalised. Running it needs neither torch nor sentence-transformers (seconds of
import time on a busy machine), only the ``tokenizers`` and ``safetensors`` packages; it reads the very
files sentence-transformers saved, so the fingerprint (a hash of those files) is the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

STATIC_MODULE = "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding"


def is_static_model(path: Path) -> bool:
    """True when ``path`` holds a sentence-transformers model made of one StaticEmbedding module saved
    as ``model.safetensors`` + ``tokenizer.json`` at its root."""
    modules = path / "modules.json"
    if not modules.is_file() or not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        return False
    try:
        mods = json.loads(modules.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(mods, list)
        and len(mods) == 1
        and str(mods[0].get("type", "")).endswith("StaticEmbedding")
        and mods[0].get("path", "") == ""
    )


class NumpyStaticEmbedder:
    """Embeds like sentence-transformers' ``StaticEmbedding`` + ``normalize_embeddings=True``: tokens
    without special tokens (truncated as ``tokenizer.json`` says, 512 for MiniLM), mean of their rows, divided by max(norm, 1e-12); an empty text is a zero
    vector. Rows do not depend on the batch (``independent_rows``)."""

    independent_rows = True

    def __init__(self, spec: str, path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        from llmroute.router.embedder import fingerprint_dir

        self.spec = spec
        self.path = path
        weights = load_file(str(path / "model.safetensors"))
        key = "embedding.weight" if "embedding.weight" in weights else next(iter(weights))
        self._weights = np.ascontiguousarray(weights[key], dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self.dim = int(self._weights.shape[1])
        self.fingerprint = fingerprint_dir(path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        for i, enc in enumerate(self._tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            if enc.ids:
                out[i] = self._weights[np.asarray(enc.ids, dtype=np.int64)].mean(axis=0, dtype=np.float32)
        return out / np.maximum(_row_norms(out), np.float32(1e-12))[:, None]


def _row_norms(x: np.ndarray) -> np.ndarray:
    """float32 L2 norms of the rows, summed in the order torch's CPU kernel sums them (8 lanes of
    float32 partial sums, then the lanes in turn), so that vectors come out bit for bit as
    sentence-transformers makes them on the machines the bundled numbers were measured on."""
    n, d = x.shape
    if d % 8:
        return np.linalg.norm(x, axis=1).astype(np.float32)
    sq = x * x
    lanes = sq[:, :8].copy()
    for j in range(8, d, 8):
        lanes += sq[:, j : j + 8]
    total = lanes[:, 0].copy()
    for k in range(1, 8):
        total += lanes[:, k]
    return np.sqrt(total)
