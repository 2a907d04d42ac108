"""Reward models for the direct and doubly-robust estimators, cross-fitted on the logged traffic.

The doubly-robust estimate stays unbiased only if the reward model never saw the reward it corrects,
so both models are *cross-fitted*: decisions are split into K folds and each fold's predictions come
from a model fitted on the other folds. We deliberately do not use the target router's own
probabilities as the reward model: a router retrained on this log has seen these very outcomes
(its neighbour index holds them), which would make ``q(x, a)`` echo ``r`` and hide the correction;
and its probabilities are P(quality >= threshold), not expected quality.

* quality: a small LightGBM model (cross-entropy objective, rewards in [0, 1]) on a PCA projection of
  the prompt embedding, the prompt length, and the model as a categorical feature;
* cost: the router's own kind of cost model, :class:`llmroute.router.cost.LinearCostModel` (per model,
  linear in prompt tokens), fitted on the other folds' realised costs; a model never served in those
  folds falls back to catalog prices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np
from sklearn.decomposition import PCA
from sklearn.model_selection import KFold

from llmroute.router.cost import LinearCostModel

QUALITY_PARAMS = {
    "objective": "cross_entropy",
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 10,
    "lambda_l2": 5.0,
    "feature_fraction": 0.8,
    "verbose": -1,
    "num_threads": 1,
}
QUALITY_ROUNDS = 150
PCA_DIMS = 16


def _folds(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if n < 2:
        return [(np.arange(n), np.arange(n))]
    return list(KFold(min(k, n), shuffle=True, random_state=seed).split(np.arange(n)))


def crossfit_quality(
    embeddings: np.ndarray,
    input_tokens: np.ndarray,
    logged: Sequence[str],
    reward: np.ndarray,
    query: Mapping[str, Sequence[str | None]],
    models: Sequence[str],
    folds: int = 5,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Cross-fitted E[quality | prompt, model] for every action list in ``query`` (name -> one model
    per decision; None gives NaN). ``models`` fixes the categorical coding of models."""
    n = len(logged)
    code = {m: i for i, m in enumerate(models)}
    k = min(PCA_DIMS, embeddings.shape[1], max(n - 1, 1))
    z = PCA(k, random_state=seed).fit_transform(embeddings) if n > k else np.asarray(embeddings)[:, :k]
    base = np.column_stack([z, np.log1p(np.asarray(input_tokens, dtype=np.float64))])

    def design(rows: np.ndarray, actions: Sequence[str | None]) -> np.ndarray:
        a = np.array([code.get(str(x), -1) if x is not None else -1 for x in actions], dtype=np.float64)
        return np.column_stack([base[rows], a])

    cat = [base.shape[1]]
    out = {name: np.full(n, np.nan) for name in query}
    y = np.asarray(reward, dtype=np.float64)
    for tr, va in _folds(n, folds, seed):
        booster = lgb.train(
            {**QUALITY_PARAMS, "seed": seed},
            lgb.Dataset(design(tr, [logged[i] for i in tr]), y[tr], categorical_feature=cat),
            num_boost_round=QUALITY_ROUNDS,
        )
        for name, actions in query.items():
            acts = [actions[i] for i in va]
            pred = booster.predict(design(va, acts))
            out[name][va] = np.where([a is None for a in acts], np.nan, np.clip(pred, 0.0, 1.0))
    return out


def crossfit_cost(
    input_tokens: np.ndarray,
    logged: Sequence[str],
    cost: np.ndarray,
    query: Mapping[str, Sequence[str | None]],
    models: Sequence[str],
    prices: dict[str, tuple[float | None, float | None]],
    folds: int = 5,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Cross-fitted expected cost per (prompt, model) for every action list in ``query``."""
    n = len(logged)
    models = tuple(models)
    col = {m: j for j, m in enumerate(models)}
    tokens = np.asarray(input_tokens, dtype=np.float64)
    matrix = np.full((n, len(models)), np.nan)
    for i, m in enumerate(logged):
        matrix[i, col[str(m)]] = cost[i]
    out = {name: np.full(n, np.nan) for name in query}
    for tr, va in _folds(n, folds, seed):
        cm = LinearCostModel.fit(models, tokens[tr], matrix[tr], prices, price_floor=False)  # realised, not capped
        pred = cm.predict(tokens[va])
        for name, actions in query.items():
            for r, i in enumerate(va):
                a = actions[i]
                if a is not None:
                    out[name][i] = pred[r, col[str(a)]]
    return out
