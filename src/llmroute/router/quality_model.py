"""The learned quality model: P(model meets the quality target | prompt), for every candidate model.

One LightGBM booster over pooled rows, one row per logged (prompt, model) outcome, so partial logs
(not every model answered every prompt) train it as they are and what makes a prompt hard is shared
across models. Features of a row: the prompt's embedding, cheap text features, neighbour statistics
(how every model did on the most similar logged prompts, out-of-fold for training rows), the model as
a categorical feature and, optionally, the task as a categorical hint.

The number of boosting rounds is chosen by K-fold cross-validation with early stopping on the
training logs; the out-of-fold predictions then fit one isotonic calibrator per model. The calibrated
out-of-fold probabilities (cross-fitted: each fold calibrated by the other folds) are kept as
``oof_probs_`` for choosing the decision rule and mapping quality targets to knobs, so nothing is
tuned on a test split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold

from llmroute.router.neighbours import NEIGHBOUR_KS, NeighbourIndex


@dataclass(frozen=True)
class QualityModelParams:
    """LightGBM settings and the CV protocol."""

    target: float = 1.0
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 30
    feature_fraction: float = 0.7
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    max_rounds: int = 800
    early_stopping_rounds: int = 50
    folds: int = 5
    seed: int = 0
    use_embedding: bool = True
    use_task: bool = False
    max_reference_prompts: int = 50_000

    def lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "num_threads": 0,
            "verbose": -1,
        }


@dataclass(frozen=True)
class _Calibrator:
    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if not self.x:
            return raw
        return np.interp(raw, self.x, self.y)

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> _Calibrator:
        if len(np.unique(y)) < 2 or len(raw) < 10:
            return cls((), ())
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return cls(tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))


class QualityModel:
    """Calibrated P(quality >= target) for each of ``models`` (see module docstring)."""

    def __init__(self, models: tuple[str, ...], params: QualityModelParams | None = None) -> None:
        self.models = tuple(models)
        self.params = params or QualityModelParams()

    # ---- features -------------------------------------------------------------------------------
    def _design(
        self,
        emb: np.ndarray,
        feats: np.ndarray,
        sim1: np.ndarray,
        knn: list[np.ndarray],
        task_codes: np.ndarray | None,
        rows: np.ndarray,
        model_idx: np.ndarray,
    ) -> np.ndarray:
        cols = []
        if self.params.use_embedding:
            cols.append(emb[rows])
        cols += [feats[rows], sim1[rows, None]]
        for k in knn:
            cols.append(k[rows, model_idx][:, None])  # this model's neighbour mean
            cols.append(k[rows])  # every model's neighbour mean (the prompt's profile)
        if self.params.use_task:
            assert task_codes is not None
            cols.append(task_codes[rows, None])
        cols.append(model_idx[:, None].astype(np.float32))
        return np.hstack(cols).astype(np.float32)

    def _categorical(self, n_cols: int) -> list[int]:
        cats = [n_cols - 1]
        if self.params.use_task:
            cats.append(n_cols - 2)
        return cats

    def _task_codes(self, tasks: np.ndarray | None, n: int) -> np.ndarray | None:
        if not self.params.use_task:
            return None
        codes = np.full(n, np.nan, dtype=np.float32)
        if tasks is not None:
            for i, t in enumerate(tasks):
                if t is not None and t in self.task_vocab_:
                    codes[i] = self.task_vocab_[t]
        return codes

    def _labels(self, y: np.ndarray) -> np.ndarray:
        return (y >= self.params.target - 1e-9).astype(np.float32)

    # ---- fit / predict --------------------------------------------------------------------------
    def fit(
        self, emb: np.ndarray, feats: np.ndarray, quality: np.ndarray, tasks: np.ndarray | None = None
    ) -> QualityModel:
        """Fit on (n, d) embeddings, (n, f) text features and an (n, m) quality matrix (NaN = unknown)."""
        p = self.params
        n, m = quality.shape
        if m != len(self.models):
            raise ValueError(f"quality matrix has {m} columns for {len(self.models)} models")
        known = ~np.isnan(quality)
        if known.sum() == 0:
            raise ValueError("no known outcomes to learn from")
        self.task_vocab_: dict[str, int] = {}
        if p.use_task and tasks is not None:
            self.task_vocab_ = {t: i for i, t in enumerate(sorted({t for t in tasks if t is not None}))}
        codes = self._task_codes(tasks, n)

        rows_all, model_all = np.nonzero(known)
        y_all = self._labels(quality[rows_all, model_all])
        folds = list(KFold(min(p.folds, n), shuffle=True, random_state=p.seed).split(np.arange(n)))

        # out-of-fold neighbour features for every training prompt
        sim1 = np.zeros(n, dtype=np.float32)
        knn = [np.zeros((n, m)) for _ in NEIGHBOUR_KS]
        for tr, va in folds:
            s, ks = NeighbourIndex(emb[tr], quality[tr]).stats(emb[va])
            sim1[va] = s
            for out, k in zip(knn, ks):
                out[va] = k
        X_all = self._design(emb, feats, sim1, knn, codes, rows_all, model_all)
        cats = self._categorical(X_all.shape[1])

        best_iters, raw_oof = [], np.full(len(rows_all), np.nan)
        boosters = []
        for tr, va in folds:
            in_tr = np.isin(rows_all, tr)
            dtr = lgb.Dataset(X_all[in_tr], y_all[in_tr], categorical_feature=cats, free_raw_data=False)
            dva = lgb.Dataset(X_all[~in_tr], y_all[~in_tr], categorical_feature=cats, reference=dtr)
            b = lgb.train(
                p.lgb_params(),
                dtr,
                num_boost_round=p.max_rounds,
                valid_sets=[dva],
                callbacks=[lgb.early_stopping(p.early_stopping_rounds, verbose=False)],
            )
            best_iters.append(b.best_iteration or p.max_rounds)
            boosters.append((b, ~in_tr))
        self.n_rounds_ = int(np.median(best_iters))
        self.cv_best_iterations_ = [int(b) for b in best_iters]
        for b, va_rows in boosters:
            raw_oof[va_rows] = b.predict(X_all[va_rows], num_iteration=self.n_rounds_)

        # per-model isotonic calibration; cross-fitted calibration for the OOF probabilities
        self.calibrators_ = [
            _Calibrator.fit(raw_oof[model_all == j], y_all[model_all == j]) for j in range(m)
        ]
        oof_cal = np.empty_like(raw_oof)
        fold_of_row = np.empty(n, dtype=int)
        for f, (_, va) in enumerate(folds):
            fold_of_row[va] = f
        row_fold = fold_of_row[rows_all]
        for f in range(len(folds)):
            for j in range(m):
                fit_sel = (row_fold != f) & (model_all == j)
                use_sel = (row_fold == f) & (model_all == j)
                if use_sel.any():
                    oof_cal[use_sel] = _Calibrator.fit(raw_oof[fit_sel], y_all[fit_sel])(raw_oof[use_sel])
        self.oof_probs_ = np.full((n, m), np.nan)
        self.oof_probs_[rows_all, model_all] = oof_cal
        # prompts some model never answered still need an OOF guess for every model
        self.oof_probs_ = np.where(np.isnan(self.oof_probs_), np.nanmean(self.oof_probs_, axis=0), self.oof_probs_)
        self.cv_log_loss_ = float(_log_loss(y_all, oof_cal))

        dall = lgb.Dataset(X_all, y_all, categorical_feature=cats)
        self.booster_ = lgb.train(p.lgb_params(), dall, num_boost_round=self.n_rounds_)
        keep = np.arange(n)
        if n > p.max_reference_prompts:
            keep = np.random.default_rng(p.seed).choice(n, p.max_reference_prompts, replace=False)
        self.index_ = NeighbourIndex(np.asarray(emb[keep], dtype=np.float32), quality[keep])
        return self

    def predict(self, emb: np.ndarray, feats: np.ndarray, tasks: np.ndarray | None = None) -> np.ndarray:
        """(n, m) calibrated probabilities."""
        n, m = len(emb), len(self.models)
        sim1, knn = self.index_.stats(emb)
        rows = np.repeat(np.arange(n), m)
        model_idx = np.tile(np.arange(m), n)
        X = self._design(emb, feats, sim1, knn, self._task_codes(tasks, n), rows, model_idx)
        raw = self.booster_.predict(X).reshape(n, m)
        return np.column_stack([self.calibrators_[j](raw[:, j]) for j in range(m)])

    # ---- persistence (LightGBM native text, JSON, NumPy; no pickles) ----------------------------
    def save(self, folder: Path, prefix: str = "quality") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(folder / f"{prefix}_lightgbm.txt"))
        meta = {
            "models": list(self.models),
            "params": asdict(self.params),
            "task_vocab": self.task_vocab_,
            "calibrators": [{"x": list(c.x), "y": list(c.y)} for c in self.calibrators_],
            "n_rounds": self.n_rounds_,
            "cv_best_iterations": self.cv_best_iterations_,
            "cv_log_loss": self.cv_log_loss_,
        }
        (folder / f"{prefix}.json").write_text(json.dumps(meta, indent=1))
        np.savez_compressed(
            folder / f"{prefix}_neighbours.npz",
            embeddings=self.index_.embeddings,
            quality=self.index_.quality.astype(np.float32),
        )

    @classmethod
    def load(cls, folder: Path, prefix: str = "quality") -> QualityModel:
        meta = json.loads((folder / f"{prefix}.json").read_text())
        obj = cls(tuple(meta["models"]), QualityModelParams(**meta["params"]))
        obj.booster_ = lgb.Booster(model_file=str(folder / f"{prefix}_lightgbm.txt"))
        obj.task_vocab_ = dict(meta["task_vocab"])
        obj.calibrators_ = [_Calibrator(tuple(c["x"]), tuple(c["y"])) for c in meta["calibrators"]]
        obj.n_rounds_ = int(meta["n_rounds"])
        obj.cv_best_iterations_ = list(meta["cv_best_iterations"])
        obj.cv_log_loss_ = float(meta["cv_log_loss"])
        with np.load(folder / f"{prefix}_neighbours.npz") as z:
            obj.index_ = NeighbourIndex(z["embeddings"], z["quality"].astype(np.float64))
        return obj


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
