"""Neighbour statistics: how the models did on the most similar logged prompts.

For a prompt, its ``k`` nearest logged prompts (cosine similarity of embeddings) give, per model, the
mean observed quality (unknown outcomes skipped, falling back to the model's overall mean). These are
features of the learned quality model and, on their own, the kNN baseline. Training rows get them
out-of-fold, so a prompt never sees its own outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEIGHBOUR_KS = (10, 50)


@dataclass(frozen=True)
class NeighbourIndex:
    """Reference embeddings (L2-normalised, float32) and their (n, m) quality matrix (NaN = unknown)."""

    embeddings: np.ndarray
    quality: np.ndarray

    def mean_quality(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """(q, m) mean quality of the ``k`` nearest reference prompts per model."""
        return self.stats(query, (k,), exclude)[1][0]

    def stats(
        self, query: np.ndarray, ks: tuple[int, ...] = NEIGHBOUR_KS, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Top-1 similarity (q,) and, for each k, the (q, m) neighbour mean quality.

        ``exclude`` is an optional (q, n) boolean mask of reference rows a query may not use.
        """
        q = np.asarray(query, dtype=np.float32)
        n = len(self.embeddings)
        prior = np.nanmean(self.quality, axis=0) if n else np.zeros(self.quality.shape[1])
        prior = np.where(np.isnan(prior), 0.5, prior)
        if n == 0:
            return np.zeros(len(q), dtype=np.float32), [np.tile(prior, (len(q), 1)) for _ in ks]
        kmax = min(max(ks), n)
        out_sim = np.empty(len(q), dtype=np.float32)
        outs = [np.empty((len(q), self.quality.shape[1])) for _ in ks]
        known = ~np.isnan(self.quality)
        filled = np.where(known, self.quality, 0.0)
        for start in range(0, len(q), 1024):
            sims = q[start : start + 1024] @ self.embeddings.T
            if exclude is not None:
                sims = np.where(exclude[start : start + 1024], -np.inf, sims)
            top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax]
            top_sims = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-top_sims, axis=1)
            top = np.take_along_axis(top, order, axis=1)
            out_sim[start : start + 1024] = np.take_along_axis(top_sims, order[:, :1], axis=1)[:, 0]
            for out, k in zip(outs, ks):
                idx = top[:, : min(k, n)]
                s = filled[idx].sum(axis=1)
                c = known[idx].sum(axis=1)
                # shrink towards the model's overall mean by one pseudo-observation
                out[start : start + 1024] = (s + prior) / (c + 1.0)
        return out_sim, outs
