"""The answer scorer's training rows as integer codes into their distinct texts.

A log row of the scorer is (prompt, response, model, quality[, cost_usd]). Held as Python lists per
row, a million rows cost gigabytes: ``Series.astype(str).tolist()`` copies every prompt string (Parquet
reading shares one string object among a prompt's rows; the copies do not), and the "earlier answers"
of an augmented row were tuples of (model, answer) strings. Here each column is a code per row (int32)
into the list of its distinct values (first-seen order), and an augmented row's earlier answers are
the *row indices* of those answers (:func:`earlier_rows`), turned back into strings only for the rows
whose features are being built (:meth:`ScorerRows.texts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_EARLIER = 2  # an augmented row gets 1 or 2 earlier answers
REQUIRED = ("prompt", "response", "model", "quality")
PCA_SAMPLE = 100_000  # distinct texts a PCA of the scorer is fitted on, at most (see pca_sample)


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """(n,) uint64: a 64-bit hash of each text (BLAKE2b), the same in every process: the key under which
    a Dask worker and the client tell texts apart without sending them."""
    return np.array([int.from_bytes(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
                     for t in texts], dtype=np.uint64)


def pca_sample(keys: np.ndarray, cap: int = PCA_SAMPLE) -> np.ndarray:
    """Positions (sorted) of the texts a PCA is fitted on, given each distinct text's key: all of them
    when there are at most ``cap``, else the ``cap`` with the smallest keys (a hash-determined uniform
    sample, the same whichever process or partition holds the texts)."""
    if len(keys) <= cap:
        return np.arange(len(keys))
    return np.sort(np.argsort(keys, kind="stable")[:cap])


def _codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(int32 code per value, distinct values as ``str`` in first-seen order); values whose ``str`` is
    equal share a code (as ``col.astype(str)`` would make them equal)."""
    codes, uniq = pd.factorize(col)
    names = [str(u) for u in uniq]
    merged, distinct = pd.factorize(pd.Index(names, dtype=object))
    return merged[codes].astype(np.int32), [str(v) for v in distinct]


@dataclass(frozen=True)
class ScorerRows:
    """Training rows of the answer scorer (see module docstring); ``y`` is ``quality >= threshold``."""

    prompts: list[str]  # distinct prompt texts, first-seen order
    responses: list[str]  # distinct response texts
    models: list[str]  # distinct model names
    prompt: np.ndarray  # (n,) int32 code into prompts
    response: np.ndarray  # (n,) int32 code into responses
    model: np.ndarray  # (n,) int32 code into models
    y: np.ndarray  # (n,) float32 label
    cost: np.ndarray  # (n,) float64 cost_usd (NaN: not logged)
    n_skipped: int  # rows left out for a missing prompt, response, model or quality

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, threshold: float) -> ScorerRows:
        """The rows of long-format logs with a prompt, response, model and quality (the others are
        counted in ``n_skipped``). ValueError naming the missing columns when there are any."""
        missing = set(REQUIRED) - set(df.columns)
        if missing:
            raise ValueError(f"scorer training logs need the columns prompt, response, model, quality; "
                             f"missing {sorted(missing)}")
        keep = (df["prompt"].notna() & df["response"].notna() & df["quality"].notna() & df["model"].notna()).to_numpy()
        rows = df[keep]
        p, prompts = _codes(rows["prompt"])
        r, responses = _codes(rows["response"])
        m, models = _codes(rows["model"])
        y = (rows["quality"].to_numpy(dtype=np.float64) >= threshold - 1e-9).astype(np.float32)
        cost = (pd.to_numeric(rows["cost_usd"], errors="coerce").to_numpy(dtype=np.float64)
                if "cost_usd" in rows.columns else np.full(len(rows), np.nan))
        return cls(prompts, responses, models, p, r, m, y, cost, int((~keep).sum()))

    def mean_cost(self) -> dict[str, float]:
        """Each model's mean logged cost (NaN costs left out; models without any left out)."""
        means = pd.Series(self.cost).groupby(self.model).mean()
        return {self.models[int(k)]: float(v) for k, v in means.items() if np.isfinite(v)}

    def model_prior(self) -> dict[str, float]:
        """Each model's success rate on these rows (the agreement features' prior)."""
        means = pd.Series(self.y).groupby(self.model).mean()
        return {self.models[int(k)]: float(v) for k, v in sorted(means.items(), key=lambda kv: self.models[int(kv[0])])}

    def texts(self, rows: np.ndarray, earlier: np.ndarray | None = None
              ) -> tuple[list[str], list[str], list[str], list[tuple[tuple[str, str], ...]]]:
        """(prompts, responses, models, earlier answers) of ``rows`` as strings (references to the
        distinct texts, no copies); ``earlier[k]``: the row indices of row ``k``'s earlier answers, -1
        padded (None: no earlier answers)."""
        P, R, M = self.prompts, self.responses, self.models
        prompts = [P[c] for c in self.prompt[rows]]
        responses = [R[c] for c in self.response[rows]]
        models = [M[c] for c in self.model[rows]]
        if earlier is None:
            ctx: list[tuple[tuple[str, str], ...]] = [()] * len(rows)
        else:
            ctx = [tuple((M[self.model[e]], R[self.response[e]]) for e in prev if e >= 0) for prev in earlier]
        return prompts, responses, models, ctx


def earlier_rows(data: ScorerRows, mean_cost: dict[str, float], rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(row index, earlier answers' row indices (k, :data:`MAX_EARLIER`), -1 padded) of the augmented
    rows: for every row whose prompt has answers of cheaper models (by ``mean_cost``; unknown cost =
    infinite), 1 or 2 of them drawn at random with ``rng``, cheapest first. The same draws, in the same
    order, as :func:`llmroute.training.scorer.earlier_contexts` over the rows' strings (tested)."""
    cost_of = np.array([mean_cost.get(m, np.inf) for m in data.models], dtype=np.float64)
    return draw_earlier(data.prompt, data.model, cost_of, rng)


def draw_earlier(group: np.ndarray, model: np.ndarray, cost_of: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`earlier_rows` from numbers alone: ``group[i]`` the prompt of row ``i`` (any integer code,
    equal for equal prompt texts), ``model[i]`` its model's code, ``cost_of[c]`` the mean cost of model
    ``c``. Only the row indices of a prompt are held per row (no texts), so a Dask client can draw for
    every row of the logs."""
    by_prompt: dict[int, list[int]] = {}
    g_list, m_list = group.tolist(), model.tolist()
    for i, p in enumerate(g_list):
        by_prompt.setdefault(p, []).append(i)
    at: list[int] = []
    picks: list[list[int]] = []
    for i, (p, m) in enumerate(zip(g_list, m_list)):
        mine = cost_of[m]
        cheaper = [j for j in by_prompt[p] if cost_of[m_list[j]] < mine and m_list[j] != m]
        if not cheaper:
            continue
        k = int(rng.integers(1, min(MAX_EARLIER, len(cheaper)) + 1))
        pick = sorted((cheaper[j] for j in rng.choice(len(cheaper), size=k, replace=False)),
                      key=lambda j: cost_of[m_list[j]])
        at.append(i)
        picks.append(pick)
    earlier = np.full((len(at), MAX_EARLIER), -1, dtype=np.int64)
    for k, pick in enumerate(picks):
        earlier[k, : len(pick)] = pick
    return np.asarray(at, dtype=np.int64), earlier
