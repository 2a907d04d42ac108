"""The learned quality model: P(model meets the quality target | prompt), for every candidate model.

One LightGBM booster over pooled rows, one row per logged (prompt, model) outcome, so partial logs
(not every model answered every prompt) train it as they are and what makes a prompt hard is shared
across models. Features of a row:

- the prompt: a PCA projection of its embedding, cheap text features, neighbour statistics
  (:mod:`llmroute.router.neighbours`: how every model did on the most similar logged prompts,
  near-duplicate flags), and, when the training logs carry task labels, the task *inferred* from the
  embedding by a logistic regression (so unlabelled production prompts benefit too);
- the model: its neighbour statistics, its per-task success rate weighted by the inferred task, and a
  categorical feature (inferred task x model, or model alone without task labels).

A task hint at routing time replaces the inferred task distribution by the named task.

Everything that could overfit is chosen on the training logs by K-fold cross-validation: training
rows get out-of-fold neighbour statistics and task probabilities; the number of boosting rounds comes
from early stopping per fold; the calibration (none, Platt or isotonic, per model) is the one with
the lowest cross-fitted out-of-fold log-loss. Out-of-fold neighbour statistics search at most
``max_reference_prompts`` prompts of the other folds (:func:`reference_folds`), as many as the served
index keeps. The calibrated out-of-fold probabilities are kept as
``oof_probs_`` for choosing the decision rule and mapping quality targets to knobs, so nothing is
tuned on a test split. Stored as LightGBM text, JSON and NumPy arrays (no pickles).

Loading and predicting need only NumPy: a loaded model's boosters are
:class:`~llmroute.router.native_booster.NativeBooster` (LightGBM's C library without its Python package,
which imports scikit-learn, pandas and SciPy); fitting imports LightGBM and scikit-learn when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from llmroute.progress import Report, no_report
from llmroute.router.native_booster import BoosterPredictor, NativeBooster
from llmroute.router.neighbours import (
    TWIN_SIMILARITY,
    NeighbourIndex,
    NeighbourStats,
    out_of_fold_stats,
    rowwise_matmul,
)

if TYPE_CHECKING:
    import lightgbm as lgb

CALIBRATIONS = ("none", "platt", "isotonic")


@dataclass(frozen=True)
class QualityModelParams:
    """LightGBM settings and the CV protocol (defaults chosen by CV on the RouterBench training split)."""

    target: float = 0.5
    learning_rate: float = 0.02
    num_leaves: int = 7
    min_child_samples: int = 80
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    lambda_l2: float = 10.0
    max_rounds: int = 1500
    early_stopping_rounds: int = 100
    folds: int = 5
    seed: int = 0
    embedding_dims: int = 8
    bags: int = 1
    max_reference_prompts: int = 50_000

    def lgb_params(self, bag: int = 0) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed + 1000 * bag,
            "verbose": -1,
        }


@dataclass(frozen=True)
class _Calibrator:
    kind: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.kind == "isotonic" and self.x:
            return np.interp(raw, self.x, self.y)
        if self.kind == "platt" and self.x:
            a, b = self.x
            return 1.0 / (1.0 + np.exp(-(a * _logit(raw) + b)))
        return raw

    @classmethod
    def fit(cls, kind: str, raw: np.ndarray, y: np.ndarray) -> _Calibrator:
        if kind == "none" or len(np.unique(y)) < 2 or len(raw) < 10:
            return cls("none")
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import LogisticRegression

        if kind == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            return cls(kind, tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
        lr = LogisticRegression(C=1e4).fit(_logit(raw)[:, None], y)
        return cls(kind, (float(lr.coef_[0, 0]), float(lr.intercept_[0])))


@dataclass(frozen=True)
class FoldFit:
    """One cross-validation fold's booster and its early-stopping optimum."""

    booster: lgb.Booster
    best_iteration: int


class FitBackend(Protocol):
    """Where the quality model's heavy steps run. The in-process :class:`LocalBackend` is the default;
    ``llmroute.training.dask_backend`` runs the same steps on a Dask cluster. Every backend computes
    the same quantities from the same inputs (folds, parameters and seeds come from the model)."""

    def neighbour_stats(self, emb: np.ndarray, success: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> NeighbourStats:
        """Out-of-fold neighbour statistics (see :func:`~llmroute.router.neighbours.out_of_fold_stats`)."""
        ...

    def fit_folds(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, in_train: list[np.ndarray],
                  cats: list[int], max_rounds: int, early_stopping_rounds: int,
                  on_fold: Callable[[int], None] | None = None) -> list[FoldFit]:
        """One early-stopped booster per fold, trained on the rows ``in_train[f]`` and validated on the rest;
        ``on_fold(done)`` hears the number of folds finished so far, once per fold."""
        ...

    def fit_final(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, cats: list[int], rounds: int) -> lgb.Booster:
        """The booster on every row, ``rounds`` boosting rounds."""
        ...


class LocalBackend:
    """Everything in this process (LightGBM uses the process's OpenMP threads)."""

    def neighbour_stats(self, emb: np.ndarray, success: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> NeighbourStats:
        return out_of_fold_stats(emb, success, folds)

    def fit_folds(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, in_train: list[np.ndarray],
                  cats: list[int], max_rounds: int, early_stopping_rounds: int,
                  on_fold: Callable[[int], None] | None = None) -> list[FoldFit]:
        fits = []
        for mask in in_train:
            fits.append(fit_fold(params, X, y, mask, cats, max_rounds, early_stopping_rounds))
            if on_fold is not None:
                on_fold(len(fits))
        return fits

    def fit_final(self, params: dict[str, Any], X: np.ndarray, y: np.ndarray, cats: list[int], rounds: int) -> lgb.Booster:
        import lightgbm as lgb

        return lgb.train(params, lgb.Dataset(X, y, categorical_feature=cats), num_boost_round=rounds)


def reference_folds(
    folds: list[tuple[np.ndarray, np.ndarray]], cap: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds with each training side cut to at most ``cap`` prompts (a seeded uniform sample,
    sorted), the reference prompts of the out-of-fold neighbour statistics. The served router's index
    keeps at most ``cap`` prompts too, so training rows see neighbour statistics from an index of the
    size serving uses, and the search costs O(prompts x cap) instead of O(prompts^2). Folds whose
    training side is within the cap are returned as they are."""
    return [(capped_rows(tr, cap, [seed, f]), va) for f, (tr, va) in enumerate(folds)]


def capped_rows(rows: np.ndarray, cap: int, seed: list[int]) -> np.ndarray:
    """``rows`` when there are at most ``cap`` of them; otherwise a seeded uniform sample of ``cap``
    of them, sorted (the same for the same rows and seed)."""
    if len(rows) <= cap:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, cap, replace=False))


def fit_fold(params: dict[str, Any], X: np.ndarray, y: np.ndarray, in_train: np.ndarray, cats: list[int],
             max_rounds: int, early_stopping_rounds: int) -> FoldFit:
    """One fold: train on ``X[in_train]``, early-stop on the other rows."""
    return fit_split(params, X[in_train], y[in_train], X[~in_train], y[~in_train], cats, max_rounds,
                     early_stopping_rounds)


def fit_split(params: dict[str, Any], X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray,
              y_valid: np.ndarray, cats: list[int], max_rounds: int, early_stopping_rounds: int) -> FoldFit:
    """Train on ``X_train``, early-stop on ``X_valid`` (:func:`fit_fold` with the rows already split)."""
    import lightgbm as lgb

    dtr = lgb.Dataset(X_train, y_train, categorical_feature=cats, free_raw_data=False)
    dva = lgb.Dataset(X_valid, y_valid, categorical_feature=cats, reference=dtr)
    b = lgb.train(
        params, dtr, num_boost_round=max_rounds, valid_sets=[dva],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    return FoldFit(b, int(b.best_iteration or max_rounds))


class QualityModel:
    """Calibrated P(quality >= target) for each of ``models`` (see module docstring)."""

    def __init__(self, models: tuple[str, ...], params: QualityModelParams | None = None,
                 backend: FitBackend | None = None) -> None:
        self.models = tuple(models)
        self.params = params or QualityModelParams()
        self.backend: FitBackend = backend or LocalBackend()

    # ---- features -------------------------------------------------------------------------------
    def _project(self, emb: np.ndarray, independent_rows: bool = False) -> np.ndarray:
        if self.pca_components_.size == 0:
            return np.zeros((len(emb), 0))
        centred = emb - self.pca_mean_
        return rowwise_matmul(centred, self.pca_components_.T) if independent_rows else centred @ self.pca_components_.T

    def _task_probs(self, emb: np.ndarray, hints: np.ndarray | None = None, independent_rows: bool = False) -> np.ndarray:
        """(n, T) task distribution inferred from the embedding; a known hint replaces it."""
        T = len(self.tasks_)
        if T == 0:
            return np.zeros((len(emb), 0))
        if T == 1:
            probs = np.ones((len(emb), 1))
        else:
            z = (rowwise_matmul(emb, self.task_coef_.T) if independent_rows else emb @ self.task_coef_.T)
            z = z + self.task_intercept_
            z -= z.max(axis=1, keepdims=True)
            probs = np.exp(z)
            probs /= probs.sum(axis=1, keepdims=True)
        if hints is not None:
            for i, t in enumerate(hints):
                if t is not None and t in self.tasks_:
                    probs[i] = 0.0
                    probs[i, self.tasks_.index(t)] = 1.0
        return probs

    def _design(
        self, emb: np.ndarray, feats: np.ndarray, nb: NeighbourStats, task_probs: np.ndarray,
        independent_rows: bool = False,
    ) -> np.ndarray:
        n, m = len(emb), len(self.models)
        tw = nb.s1 > TWIN_SIMILARITY
        prompt_cols = np.hstack(
            [
                self._project(emb, independent_rows),
                feats,
                nb.s1[:, None],
                tw[:, None].astype(float),
                np.where(tw, nb.y1.mean(axis=1), np.nan)[:, None],
                nb.k20.mean(axis=1)[:, None],
                nb.k100.mean(axis=1)[:, None],
                task_probs,
            ]
        )
        model_blocks = [
            nb.y1,
            nb.k10w,
            nb.k20,
            nb.k100,
            np.where(tw[:, None], nb.y1, np.nan),
        ]
        if task_probs.shape[1]:
            model_blocks.append(task_probs @ self.task_success_)
        rows = np.repeat(np.arange(n), m)
        model_idx = np.tile(np.arange(m), n)
        per_model = np.column_stack([b.reshape(-1) for b in model_blocks])
        group = task_probs.argmax(axis=1)[rows] if task_probs.shape[1] else np.zeros(n * m, dtype=int)
        category = (group * m + model_idx).astype(np.float64)
        return np.hstack([prompt_cols[rows], per_model, category[:, None]]).astype(np.float32)

    def _labels(self, y: np.ndarray) -> np.ndarray:
        return (y >= self.params.target - 1e-9).astype(np.float32)

    # ---- fit / predict --------------------------------------------------------------------------
    def fit(
        self,
        emb: np.ndarray,
        feats: np.ndarray,
        quality: np.ndarray,
        tasks: np.ndarray | None = None,
        report: Report | None = None,
    ) -> QualityModel:
        """Fit on (n, d) embeddings, (n, f) text features, an (n, m) quality matrix (NaN = unknown)
        and optional task labels (None entries allowed). ``report(fraction, label)`` hears how far the
        fit is (see :mod:`llmroute.progress`)."""
        import lightgbm as lgb
        from sklearn.decomposition import PCA
        from sklearn.model_selection import KFold

        report = report or no_report()
        p = self.params
        n, m = quality.shape
        if tasks is not None:
            tasks = np.asarray(list(tasks), dtype=object)
        if m != len(self.models):
            raise ValueError(f"quality matrix has {m} columns for {len(self.models)} models")
        known = ~np.isnan(quality)
        if known.sum() == 0:
            raise ValueError("no known outcomes to learn from")
        n_folds = max(2, min(p.folds, n))
        folds = list(KFold(n_folds, shuffle=True, random_state=p.seed).split(np.arange(n)))
        success = np.where(known, self._labels(np.nan_to_num(quality)), np.nan)

        report(0.0, "task classifier")
        k = min(p.embedding_dims, emb.shape[1], max(n - 1, 0))
        if k > 0:
            pca = PCA(k, random_state=p.seed).fit(emb)
            self.pca_mean_, self.pca_components_ = pca.mean_, pca.components_
        else:
            self.pca_mean_, self.pca_components_ = np.zeros(emb.shape[1]), np.zeros((0, emb.shape[1]))

        # tasks: a classifier from embedding to task, and per-task success rates
        labelled = np.array([t is not None for t in tasks]) if tasks is not None else np.zeros(n, dtype=bool)
        self.tasks_: list[str] = sorted({str(t) for t in tasks[labelled]}) if labelled.any() else []  # type: ignore[index]  # tasks is set when a row is labelled
        task_oof = np.zeros((n, len(self.tasks_)))
        if self.tasks_:
            t_idx = np.array([self.tasks_.index(str(t)) if ok else -1 for t, ok in zip(tasks, labelled)])  # type: ignore[arg-type]  # (as above)
            prior = np.nanmean(success, axis=0)
            self.task_success_ = np.stack(
                [
                    (np.nansum(success[t_idx == i], axis=0) + prior) / ((~np.isnan(success[t_idx == i])).sum(axis=0) + 1)
                    for i in range(len(self.tasks_))
                ]
            )
            self.task_coef_, self.task_intercept_ = self._fit_task_classifier(emb[labelled], t_idx[labelled])
            for tr, va in folds:
                sel = tr[labelled[tr]]
                if len(np.unique(t_idx[sel])) == len(self.tasks_) and len(self.tasks_) > 1:
                    coef, icpt = self._fit_task_classifier(emb[sel], t_idx[sel])
                    saved = (self.task_coef_, self.task_intercept_)
                    self.task_coef_, self.task_intercept_ = coef, icpt
                    task_oof[va] = self._task_probs(emb[va])
                    self.task_coef_, self.task_intercept_ = saved
                else:
                    task_oof[va] = self._task_probs(emb[va])
        else:
            self.task_success_ = np.zeros((0, m))
            self.task_coef_, self.task_intercept_ = np.zeros((0, emb.shape[1])), np.zeros(0)

        # progress: tasks and neighbours 10%, CV folds 40%, bagged OOF 20%, calibration 5%, final fit 25%
        report(0.02, "neighbour statistics")
        nb = self.backend.neighbour_stats(emb, success, reference_folds(folds, p.max_reference_prompts, p.seed))
        report(0.10, "neighbour features")
        X = self._design(emb, feats, nb, task_oof)
        y = success.reshape(-1)
        row_prompt = np.repeat(np.arange(n), m)
        row_model = np.tile(np.arange(m), n)
        ok = ~np.isnan(y)
        X, y, row_prompt, row_model = X[ok], y[ok], row_prompt[ok], row_model[ok]
        cats = [X.shape[1] - 1]

        in_train = [np.isin(row_prompt, tr) for tr, _ in folds]
        report(0.10, "CV folds")

        def fold_done(done: int) -> None:
            report(0.10 + 0.40 * done / len(folds), f"CV fold {done}/{len(folds)}")

        fits = self.backend.fit_folds(p.lgb_params(), X, y, in_train, cats, p.max_rounds, p.early_stopping_rounds,
                                      fold_done)
        best_iters = [f.best_iteration for f in fits]
        boosters = [(f.booster, ~mask) for f, mask in zip(fits, in_train)]
        self.n_rounds_ = int(np.median(best_iters))
        self.cv_best_iterations_ = [int(b) for b in best_iters]
        raw_oof = np.empty(len(y))
        for f_i, (_, (b, va_rows)) in enumerate(zip(folds, boosters)):
            report(0.50 + 0.20 * f_i / len(folds), f"out-of-fold predictions {f_i + 1}/{len(folds)}")
            preds = [b.predict(X[va_rows], num_iteration=self.n_rounds_)]
            for bag in range(1, p.bags):
                in_tr = ~va_rows
                extra = lgb.train(
                    p.lgb_params(bag), lgb.Dataset(X[in_tr], y[in_tr], categorical_feature=cats), self.n_rounds_
                )
                preds.append(extra.predict(X[va_rows]))
            raw_oof[va_rows] = np.mean(preds, axis=0)

        report(0.70, "calibration")
        # calibration: the kind with the lowest cross-fitted OOF log-loss, then fitted on all OOF rows
        fold_of = np.empty(n, dtype=int)
        for f, (_, va) in enumerate(folds):
            fold_of[va] = f
        row_fold = fold_of[row_prompt]
        crossfit: dict[str, np.ndarray] = {}
        for kind in CALIBRATIONS:
            out = np.empty_like(raw_oof)
            for f in range(len(folds)):
                for j in range(m):
                    use = (row_fold == f) & (row_model == j)
                    fit = (row_fold != f) & (row_model == j)
                    if use.any():
                        out[use] = _Calibrator.fit(kind, raw_oof[fit], y[fit])(raw_oof[use])
            crossfit[kind] = out
        self.cv_log_loss_by_calibration_ = {k: _log_loss(y, v) for k, v in crossfit.items()}
        self.calibration_ = min(self.cv_log_loss_by_calibration_, key=lambda k: self.cv_log_loss_by_calibration_[k])
        self.cv_log_loss_ = self.cv_log_loss_by_calibration_[self.calibration_]
        self.calibrators_ = [
            _Calibrator.fit(self.calibration_, raw_oof[row_model == j], y[row_model == j]) for j in range(m)
        ]
        self.oof_probs_ = np.full((n, m), np.nan)
        self.oof_probs_[row_prompt, row_model] = crossfit[self.calibration_]
        col_mean = np.nanmean(np.where(np.isnan(self.oof_probs_), np.nan, self.oof_probs_), axis=0)
        self.oof_probs_ = np.where(np.isnan(self.oof_probs_), np.nan_to_num(col_mean, nan=0.5), self.oof_probs_)

        report(0.75, "final model")
        self.boosters_: list[BoosterPredictor] = []
        for bag in range(p.bags):
            self.boosters_.append(self.backend.fit_final(p.lgb_params(bag), X, y, cats, self.n_rounds_))
            report(0.75 + 0.25 * (bag + 1) / p.bags, f"final model {bag + 1}/{p.bags}")
        keep = np.arange(n)
        if n > p.max_reference_prompts:
            keep = np.sort(np.random.default_rng(p.seed).choice(n, p.max_reference_prompts, replace=False))
        self.index_ = NeighbourIndex(np.ascontiguousarray(emb[keep], dtype=np.float32), success[keep])
        return self

    def _fit_task_classifier(self, emb: np.ndarray, t_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        T = len(self.tasks_)
        if T < 2:
            return np.zeros((T, emb.shape[1])), np.zeros(T)
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=10.0, max_iter=3000).fit(emb, t_idx)
        coef = np.zeros((T, emb.shape[1]))
        icpt = np.full(T, -30.0)  # a task absent from this fold gets (almost) no probability
        if lr.coef_.shape[0] == 1:  # binary: sklearn keeps one row for classes_[1]
            a, b = lr.classes_
            coef[b], icpt[b] = lr.coef_[0], lr.intercept_[0]
            coef[a], icpt[a] = 0.0, 0.0
        else:
            coef[lr.classes_], icpt[lr.classes_] = lr.coef_, lr.intercept_
        return coef, icpt

    def predict(
        self, emb: np.ndarray, feats: np.ndarray, tasks: Any = None, *, independent_rows: bool = False
    ) -> np.ndarray:
        """(n, m) calibrated probabilities; ``tasks`` (optional) are hints that override the inferred task.

        ``independent_rows``: the matrix products with the embeddings run one prompt at a time (see
        :func:`~llmroute.router.neighbours.rowwise_matmul`), so that a row's probabilities are bit for bit
        those of the prompt predicted alone. For serving (batched requests must get their unbatched
        decisions); batch evaluation leaves it off.
        """
        n, m = len(emb), len(self.models)
        hints = np.asarray(list(tasks), dtype=object) if tasks is not None else None
        ind = independent_rows
        X = self._design(
            emb, feats, self.index_.stats(emb, ind), self._task_probs(emb, hints, ind), independent_rows=ind
        )
        # one thread for small batches: thread start-up costs more than it saves on a few rows
        threads = 1 if n <= 64 else 0
        raw = np.mean([b.predict(X, num_threads=threads) for b in self.boosters_], axis=0).reshape(n, m)
        return np.column_stack([self.calibrators_[j](raw[:, j]) for j in range(m)])

    # ---- persistence (LightGBM native text, JSON, NumPy; no pickles) ----------------------------
    def save(self, folder: Path, prefix: str = "quality") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for bag, b in enumerate(self.boosters_):
            b.save_model(str(folder / f"{prefix}_lightgbm_{bag}.txt"))
        meta = {
            "models": list(self.models),
            "params": asdict(self.params),
            "tasks": self.tasks_,
            "calibration": self.calibration_,
            "calibrators": [{"kind": c.kind, "x": list(c.x), "y": list(c.y)} for c in self.calibrators_],
            "n_rounds": self.n_rounds_,
            "cv_best_iterations": self.cv_best_iterations_,
            "cv_log_loss": self.cv_log_loss_,
            "cv_log_loss_by_calibration": self.cv_log_loss_by_calibration_,
        }
        (folder / f"{prefix}.json").write_text(json.dumps(meta, indent=1))
        np.savez_compressed(
            folder / f"{prefix}_arrays.npz",
            embeddings=self.index_.embeddings,
            quality=self.index_.quality.astype(np.float32),
            pca_mean=self.pca_mean_,
            pca_components=self.pca_components_,
            task_coef=self.task_coef_,
            task_intercept=self.task_intercept_,
            task_success=self.task_success_,
        )

    @classmethod
    def load(cls, folder: Path, prefix: str = "quality") -> QualityModel:
        meta = json.loads((folder / f"{prefix}.json").read_text())
        obj = cls(tuple(meta["models"]), QualityModelParams(**meta["params"]))
        obj.boosters_ = [
            NativeBooster.from_file(folder / f"{prefix}_lightgbm_{bag}.txt") for bag in range(obj.params.bags)
        ]
        obj.tasks_ = list(meta["tasks"])
        obj.calibration_ = meta["calibration"]
        obj.calibrators_ = [_Calibrator(c["kind"], tuple(c["x"]), tuple(c["y"])) for c in meta["calibrators"]]
        obj.n_rounds_ = int(meta["n_rounds"])
        obj.cv_best_iterations_ = list(meta["cv_best_iterations"])
        obj.cv_log_loss_ = float(meta["cv_log_loss"])
        obj.cv_log_loss_by_calibration_ = dict(meta["cv_log_loss_by_calibration"])
        with np.load(folder / f"{prefix}_arrays.npz") as z:
            obj.index_ = NeighbourIndex(z["embeddings"], z["quality"].astype(np.float64))
            obj.pca_mean_, obj.pca_components_ = z["pca_mean"], z["pca_components"]
            obj.task_coef_, obj.task_intercept_ = z["task_coef"], z["task_intercept"]
            obj.task_success_ = z["task_success"]
        return obj


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
