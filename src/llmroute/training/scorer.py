"""Fitting the post-call answer scorer (inference lives in :mod:`llmroute.router.answer_scorer`).

Trained from benchmark logs that keep the ``response`` text (long schema: one row per prompt x model).
Label: ``quality >= threshold``. Features: see :mod:`llmroute.router.answer_scorer`.

Earlier answers. A cascade scores an answer knowing the answers of the attempts before it, which were
cheaper models (the router's order and the fixed chains both climb in cost). So each logged
(prompt, model) row is used twice: alone (a first attempt) and with the answers of one or two
randomly drawn cheaper models of the same prompt (by mean logged cost), oldest = cheapest first. Each
model's prior success rate (for the agreement features) is its mean label on all training rows.

Protocol: LightGBM binary; the number of boosting rounds is the median of the early-stopping optima of
a K-fold CV grouped by prompt (one prompt's rows, augmented or not, never sit on both sides), then one
booster is fitted on every row. The fold boosters are kept in memory (:meth:`ResponseScorer.score_oof`)
so the cascade's thresholds can be fitted on out-of-fold scores (:mod:`llmroute.training.cascade_fit`).
The PCAs of the embeddings are fitted on the distinct prompt focus texts and the distinct answers of the
training rows (label-free), at most :data:`~llmroute.training.scorer_rows.PCA_SAMPLE` of each (past
that, a sample determined by the texts' hashes, the same in one process and on Dask).

Memory: the rows are integer codes into their distinct texts (:mod:`llmroute.training.scorer_rows`);
on Dask the features are built on the workers (:mod:`llmroute.training.dask_scorer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from llmroute.progress import Report, no_report
from llmroute.router import answer_scorer as _inference
from llmroute.router.answer_scorer import (
    ARRAYS_FILE,
    BOOSTER_FILE,
    FORMAT_VERSION,
    META_FILE,
    RESPONSE_FEATURES,
    SCORER_DIR,
    Earlier,
    ScorerParams,
    answer_text,
    response_features,
    scorer_in,
)
from llmroute.router.embedder import Embedder, EmbeddingCache
from llmroute.router.quality_model import FitBackend, FoldFit, LocalBackend
from llmroute.router.text import focus_text
from llmroute.training.scorer_rows import (
    MAX_EARLIER,
    PCA_SAMPLE,
    ScorerRows,
    earlier_rows,
    pca_sample,
    text_keys,
)

DESIGN_CHUNK = 20_000  # design rows whose features are built at once (bounds the per-row embeddings and strings: about 4 KiB a row)

__all__ = [
    "ARRAYS_FILE", "BOOSTER_FILE", "FORMAT_VERSION", "META_FILE", "RESPONSE_FEATURES", "SCORER_DIR",
    "ResponseScorer", "ScorerParams", "response_features", "scorer_in", "train_scorer",
]


def earlier_contexts(
    prompts: Sequence[str], models: Sequence[str], responses: Sequence[str], mean_cost: dict[str, float], seed: int
) -> list[tuple[int, tuple[tuple[str, str], ...]]]:
    """(row index, earlier answers) of the augmented rows: for every row whose prompt has answers of
    cheaper models, the answers of 1 or 2 of them drawn at random, cheapest first."""
    rng = np.random.default_rng(seed)
    by_prompt: dict[str, list[tuple[float, str, str]]] = {}
    for p, m, r in zip(prompts, models, responses):
        by_prompt.setdefault(p, []).append((mean_cost.get(m, np.inf), m, r))
    out: list[tuple[int, tuple[tuple[str, str], ...]]] = []
    for i, (p, m) in enumerate(zip(prompts, models)):
        mine = mean_cost.get(m, np.inf)
        cheaper = [x for x in by_prompt[p] if x[0] < mine and x[1] != m]
        if not cheaper:
            continue
        k = int(rng.integers(1, min(2, len(cheaper)) + 1))
        pick = sorted((cheaper[j] for j in rng.choice(len(cheaper), size=k, replace=False)), key=lambda x: x[0])
        out.append((i, tuple((x[1], x[2]) for x in pick)))
    return out


class ResponseScorer(_inference.ResponseScorer):
    """The answer scorer with :meth:`fit` (see module docstring)."""

    def fit(
        self, df: pd.DataFrame, cache: EmbeddingCache | None = None, report: Report | None = None,
        backend: FitBackend | None = None,
    ) -> ResponseScorer:
        """Fit on long-format logs with the columns prompt, response, model, quality (rows with a
        missing response or quality are skipped and counted in ``n_skipped_``); ``report(fraction,
        label)`` hears how far the fit is (see :mod:`llmroute.progress`). ``backend``: where the CV
        fold boosters and the final booster are fitted (:class:`~llmroute.router.quality_model.FitBackend`;
        in this process by default, e.g. a Dask cluster with ``llmroute train --dask``).

        Memory: the rows are held as codes into their distinct texts
        (:class:`~llmroute.training.scorer_rows.ScorerRows`), the embeddings once per distinct text,
        the design matrix as float32, built :data:`DESIGN_CHUNK` rows at a time."""
        report = report or no_report()
        backend = backend or LocalBackend()
        p = self.params
        data = ScorerRows.from_frame(df, p.threshold)
        self.n_skipped_ = data.n_skipped
        if len(data) < 20:
            raise ValueError(f"scorer training needs at least 20 rows with a response and a quality, got {len(data)}")
        if len(np.unique(data.y)) < 2:
            raise ValueError("scorer training rows are all successes or all failures: nothing to learn")
        self.models_ = sorted(data.models)

        report(0.0, "embedding prompts and answers")
        vecs, p_at, r_at, texts = self._embed_codes(data, cache)
        report(0.3, "features")
        # the PCAs see each distinct embedding once (at most PCA_SAMPLE of them, a hash-determined sample)
        self.p_mean_, self.p_components_ = _pca(vecs[_pca_positions(p_at, texts)], p.embedding_dims, p.seed)
        self.r_mean_, self.r_components_ = _pca(vecs[_pca_positions(r_at, texts)], p.embedding_dims, p.seed)
        # each model's success rate on the training rows: how much an agreeing earlier answer is worth
        self.model_prior_ = data.model_prior()
        idx = np.arange(len(data))
        earlier = np.full((len(data), MAX_EARLIER), -1, dtype=np.int64)
        if p.agreement:
            at, prev = earlier_rows(data, data.mean_cost(), np.random.default_rng(p.seed))
            idx, earlier = np.concatenate([idx, at]), np.concatenate([earlier, prev])
        X = self.design_rows(vecs, p_at, r_at, data, idx, earlier)
        yy = data.y[idx]
        cats = [X.shape[1] - 1]
        groups = data.prompt[idx]  # codes in first-seen order: what factorizing the prompt texts gives
        n_folds = max(2, min(p.folds, len(data.prompts)))
        splits = list(GroupKFold(n_folds).split(X, yy, groups))
        in_train = []
        for tr, _ in splits:
            mask = np.zeros(len(yy), dtype=bool)
            mask[tr] = True
            in_train.append(mask)

        report(0.35, "CV folds")

        def fold_done(done: int) -> None:
            report(0.35 + 0.45 * done / n_folds, f"CV fold {done}/{n_folds}")

        fits = backend.fit_folds(p.lgb_params(), X, yy, in_train, cats, p.max_rounds, p.early_stopping_rounds,
                                 fold_done)
        oof = np.full(len(yy), np.nan)
        fold_of = np.full(len(data.prompts), -1, dtype=np.int64)
        for f, ((_, va), fit) in enumerate(zip(splits, fits)):
            oof[va] = fit.booster.predict(X[va], num_iteration=fit.booster.best_iteration)
            fold_of[groups[va]] = f
        self._set_cv(fits, {q: int(f) for q, f in zip(data.prompts, fold_of.tolist())}, yy, oof, len(data))
        report(0.8, "final model")
        self.booster_ = backend.fit_final(p.lgb_params(), X, yy, cats, self.n_rounds_)
        return self

    def _set_cv(self, fits: Sequence[FoldFit], prompt_fold: dict[str, int], yy: np.ndarray, oof: np.ndarray,
                n_alone: int) -> None:
        """The cross-validation's results: fold boosters, rounds, the fold of each prompt, AUCs (the
        first ``n_alone`` design rows are first attempts, the rest carry earlier answers)."""
        self.fold_boosters_: list[lgb.Booster] = [f.booster for f in fits]
        self.prompt_fold_: dict[str, int] = prompt_fold
        self.cv_best_iterations_ = [f.best_iteration for f in fits]
        self.n_rounds_ = max(1, int(np.median(self.cv_best_iterations_)))
        self.cv_auc_ = _auc(yy[:n_alone], oof[:n_alone])  # first attempts: comparable with format 1
        self.cv_auc_with_earlier_ = _auc(yy[n_alone:], oof[n_alone:])
        self.n_rows_ = int(n_alone)

    def _embed_codes(self, data: ScorerRows, cache: EmbeddingCache | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(embeddings of the distinct focus texts and answers, each distinct prompt's position in them,
        each distinct response's position, the embedded texts): each text embedded once."""
        focus = [focus_text(q) for q in data.prompts]
        answers = [answer_text(r) for r in data.responses]
        texts = list(dict.fromkeys([*focus, *answers]))
        pos = {t: i for i, t in enumerate(texts)}
        vecs = self._embed(texts, cache)
        return (vecs, np.array([pos[t] for t in focus], dtype=np.int64),
                np.array([pos[t] for t in answers], dtype=np.int64), texts)

    def design_rows(
        self, vecs: np.ndarray, p_at: np.ndarray, r_at: np.ndarray, data: ScorerRows, idx: np.ndarray,
        earlier: np.ndarray,
    ) -> np.ndarray:
        """The design matrix of the training rows ``idx`` (design row ``k`` is row ``idx[k]`` with the
        earlier answers of rows ``earlier[k]``, -1 padded), built :data:`DESIGN_CHUNK` rows at a time:
        only one chunk's per-row embeddings and strings exist at once. ``p_at[c]`` / ``r_at[c]``: the
        position in ``vecs`` of distinct prompt / response ``c``. Equal to one :meth:`design` call over
        every row (a row's features do not depend on the other rows)."""
        X: np.ndarray | None = None
        for start in range(0, len(idx), DESIGN_CHUNK):
            rows = idx[start : start + DESIGN_CHUNK]
            prompts, responses, models, ctx = data.texts(rows, earlier[start : start + DESIGN_CHUNK])
            part = self.design(vecs[p_at[data.prompt[rows]]], vecs[r_at[data.response[rows]]], prompts, responses,
                               models, ctx)
            if X is None:
                X = np.empty((len(idx), part.shape[1]), dtype=np.float32)
            X[start : start + len(rows)] = part
        if X is None:
            raise ValueError("the scorer's design matrix needs at least one row")
        return X

    def score_oof(
        self, prompts: Sequence[str], responses: Sequence[str], models: Sequence[str],
        earlier: Earlier | None = None, cache: EmbeddingCache | None = None,
    ) -> np.ndarray:
        """Out-of-fold probabilities: each row scored by the fold booster that did not see its prompt
        (only for prompts of the training logs; ValueError otherwise)."""
        self._check_lengths(prompts, responses, models, earlier)
        unknown = [q for q in prompts if q not in self.prompt_fold_]
        if unknown:
            raise ValueError(f"{len(unknown)} prompts were not in the scorer's training logs (e.g. {unknown[0][:60]!r})")
        X = self.features(prompts, responses, models, earlier, cache)
        fold = np.array([self.prompt_fold_[q] for q in prompts])
        out = np.zeros(len(prompts))
        for f, b in enumerate(self.fold_boosters_):
            rows = np.nonzero(fold == f)[0]
            if len(rows):
                out[rows] = b.predict(X[rows], num_iteration=b.best_iteration)
        return out


def _pca_positions(at: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """The distinct positions of ``at`` a PCA is fitted on (:func:`~llmroute.training.scorer_rows.pca_sample`)."""
    pos = np.unique(at)
    if len(pos) <= PCA_SAMPLE:
        return pos
    return pos[pca_sample(text_keys([texts[i] for i in pos]), PCA_SAMPLE)]


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(y) and len(np.unique(y)) > 1 else float("nan")


def _pca(emb: np.ndarray, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components) of a PCA of the distinct rows of ``emb``."""
    uniq = np.unique(emb, axis=0)
    k = min(dims, emb.shape[1], max(len(uniq) - 1, 1))
    pca = PCA(k, random_state=seed).fit(uniq)
    return pca.mean_, pca.components_


def train_scorer(
    df: pd.DataFrame,
    embedder: Embedder,
    folder: Path,
    threshold: float = 0.5,
    seed: int = 0,
    cache: EmbeddingCache | None = None,
    report: Report | None = None,
    backend: FitBackend | None = None,
) -> ResponseScorer:
    """Fit a :class:`ResponseScorer` on long-format logs with responses and save it to ``folder``
    (typically ``<router folder>/scorer``); ``backend``: see :meth:`ResponseScorer.fit`."""
    scorer = ResponseScorer(embedder, ScorerParams(threshold=threshold, seed=seed)).fit(df, cache, report, backend)
    scorer.save(folder)
    print(describe_scorer(scorer, folder))
    return scorer


def describe_scorer(scorer: ResponseScorer, folder: Path) -> str:
    """The line training prints about a fitted scorer saved to ``folder``."""
    return (
        f"response scorer: {scorer.n_rows_} rows ({scorer.n_skipped_} skipped without response/quality), "
        f"{scorer.n_rounds_} rounds (CV best {scorer.cv_best_iterations_}), CV AUC {scorer.cv_auc_:.3f} alone, "
        f"{scorer.cv_auc_with_earlier_:.3f} with earlier answers; saved to {folder}"
    )
