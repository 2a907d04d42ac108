"""Neighbour statistics: how the models did on the most similar logged prompts.

For a prompt, its nearest logged prompts (cosine similarity of embeddings) give, per model: the
outcome on the single most similar prompt, a similarity-weighted mean over the top 10, and plain means
over the top 20 and top 100 (unknown outcomes count as the model's overall mean). These are features of
the learned quality model and, on their own, the kNN baseline. Training rows get them out-of-fold, so
a prompt never sees its own outcome.

A top-1 similarity above :data:`TWIN_SIMILARITY` marks a near-duplicate ("twin") of a logged prompt:
production traffic repeats itself, and benchmarks hold minimal pairs (Winogrande twins) whose
outcomes are strongly related.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

TWIN_SIMILARITY = 0.9
KS = (20, 100)
WEIGHTED_K = 10
WEIGHT_SHARPNESS = 20.0


MAX_QUERY_CHUNK = 1024
CHUNK_BYTES = 64 << 20  # one chunk's similarity matrix (float32); the search holds ~4 such arrays at once


def query_chunk(n_reference: int) -> int:
    """Query rows searched at once: at most :data:`MAX_QUERY_CHUNK`, and few enough that one chunk's
    (rows x n_reference) float32 similarities stay within :data:`CHUNK_BYTES`, so the search's memory
    is bounded whatever the number of reference prompts. Never one row: a one-row product goes through
    GEMV, which rounds differently from the GEMM of larger chunks (see :func:`rowwise_matmul`)."""
    return max(2, min(MAX_QUERY_CHUNK, CHUNK_BYTES // (4 * max(n_reference, 1))))


def rowwise_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` one row of ``a`` at a time: each row is bit for bit what that row alone gives. A
    product over several rows goes through another BLAS kernel (GEMM, not GEMV) that rounds
    differently, and a last-bit difference in a similarity can pick another neighbour among near-ties."""
    if len(a) <= 1:
        return a @ b
    return np.vstack([a[i : i + 1] @ b for i in range(len(a))])


@dataclass(frozen=True)
class NeighbourStats:
    s1: np.ndarray  # (q,) top-1 similarity
    y1: np.ndarray  # (q, m) outcome on the most similar prompt
    k10w: np.ndarray  # (q, m) similarity-weighted mean over the top 10
    k20: np.ndarray  # (q, m)
    k100: np.ndarray  # (q, m)


@dataclass(frozen=True)
class NeighbourIndex:
    """Reference embeddings (L2-normalised, float32) and their (n, m) quality matrix (NaN = unknown)."""

    embeddings: np.ndarray
    quality: np.ndarray

    @cached_property
    def _filled(self) -> np.ndarray:
        """Quality with unknown outcomes replaced by the model's overall mean (0.5 if none known)."""
        q = self.quality
        known = ~np.isnan(q)
        counts = known.sum(axis=0)
        means = np.where(counts > 0, np.where(known, q, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.5)
        return np.where(known, q, means)

    def mean_quality(self, query: np.ndarray, k: int) -> np.ndarray:
        """(q, m) mean quality of the ``k`` nearest reference prompts per model (the kNN router)."""
        top, _ = self._top(query, k)
        return self._filled[top].mean(axis=1)

    def _top(self, query: np.ndarray, k: int, independent_rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(query, dtype=np.float32)
        k = min(k, len(self.embeddings))
        tops, sims_out = [], []
        step = query_chunk(len(self.embeddings))
        for start in range(0, len(q), step):
            sims = (
                rowwise_matmul(q[start : start + step], self.embeddings.T)
                if independent_rows
                else q[start : start + step] @ self.embeddings.T
            )
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            ts = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-ts, axis=1)
            tops.append(np.take_along_axis(top, order, axis=1))
            sims_out.append(np.take_along_axis(ts, order, axis=1))
        return np.vstack(tops), np.vstack(sims_out)

    def stats(self, query: np.ndarray, independent_rows: bool = False) -> NeighbourStats:
        """All neighbour statistics for the query embeddings (``independent_rows``: see :func:`rowwise_matmul`)."""
        n, m = self.quality.shape
        if n == 0:
            z = np.full((len(query), m), 0.5)
            return NeighbourStats(np.zeros(len(query)), z, z, z, z)
        top, sims = self._top(query, max(KS), independent_rows)
        f = self._filled
        w = np.exp((sims[:, :WEIGHTED_K] - 1.0) * WEIGHT_SHARPNESS)[:, :, None]
        k10w = (f[top[:, :WEIGHTED_K]] * w).sum(axis=1) / w.sum(axis=1)
        return NeighbourStats(
            s1=sims[:, 0].astype(np.float64),
            y1=f[top[:, 0]],
            k10w=k10w,
            k20=f[top[:, : KS[0]]].mean(axis=1),
            k100=f[top[:, : KS[1]]].mean(axis=1),
        )


def out_of_fold_stats(emb: np.ndarray, quality: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> NeighbourStats:
    """Neighbour statistics for every training prompt, computed from the other folds only."""
    n, m = quality.shape
    parts = {k: np.zeros((n, m)) for k in ("y1", "k10w", "k20", "k100")}
    s1 = np.zeros(n)
    for tr, va in folds:
        st = NeighbourIndex(emb[tr], quality[tr]).stats(emb[va])
        s1[va] = st.s1
        for k in parts:
            parts[k][va] = getattr(st, k)
    return NeighbourStats(s1=s1, **parts)
