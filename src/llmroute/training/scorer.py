"""The post-call response scorer: P(an answer meets the quality target | prompt, answer, model).

The router decides *before* a call; the scorer judges the answer *after* it, so the cascade can
escalate on a weak answer and the ensembles can pick among answers. It is trained from benchmark logs
that keep the ``response`` text (long schema: one row per prompt x model).

Features of one (prompt, answer, model) row:

- a PCA projection of the prompt's focus-text embedding (:func:`llmroute.router.text.focus_text`) and
  of the answer's embedding, both with the router's embedder, and their cosine similarity;
- cheap answer features (:data:`RESPONSE_FEATURES`): length, tokens, lines, empty, refusal markers,
  a single choice letter or number, a code block, an ``Answer:`` line, digit share;
- the model, as a LightGBM categorical feature (unknown models get the missing category).

Label: ``quality >= threshold``. LightGBM binary; the number of boosting rounds is the median of the
early-stopping optima of a K-fold CV grouped by prompt (so one prompt's rows never sit on both
sides), then one booster is fitted on every row. Stored in a folder as LightGBM native text, JSON and
a NumPy ``.npz`` (no pickles).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from llmroute.data.tokens import count_tokens_batch
from llmroute.router.embedder import Embedder, EmbedderMismatchError, EmbeddingCache
from llmroute.router.text import focus_text

FORMAT_VERSION = 1
BOOSTER_FILE = "scorer_lightgbm.txt"
META_FILE = "scorer.json"
SCORER_DIR = "scorer"  # where a router folder keeps its scorer (and so the registered artifact)
ARRAYS_FILE = "scorer_arrays.npz"

RESPONSE_FEATURES: tuple[str, ...] = (
    "log_chars",
    "log_tokens",
    "n_lines",
    "is_empty",
    "refusal",
    "single_choice_letter",
    "single_number",
    "code_block",
    "code_markers",
    "answer_line",
    "digit_share",
    "prompt_has_choices",
    "log_prompt_tokens",
)

_REFUSAL = re.compile(
    r"\b(i(?:'m| am) sorry|i cannot|i can't|i can not|i'm unable|i am unable|as an ai|"
    r"i do not have enough|cannot be determined|not enough information)\b",
    re.IGNORECASE,
)
_LETTER = re.compile(r"^\W*(?:answer\s*[:is]*\s*)?\(?([A-Ea-e])\)?[.):]?\s*$", re.IGNORECASE)
_NUMBER = re.compile(r"^\W*(?:answer\s*[:is]*\s*)?(-?\d+(?:[.,]\d+)?)\s*\.?\s*$", re.IGNORECASE)
_CODE = re.compile(r"\bdef |\breturn\b|\bimport |[{};]")
_ANSWER_LINE = re.compile(r"\banswer\s*(?:is)?\s*:", re.IGNORECASE)
_CHOICES = re.compile(r"^\s*\(?[A-Ea-e][\).:]\s", re.MULTILINE)


def response_features(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """One row of :data:`RESPONSE_FEATURES` per (prompt, response) (float32)."""
    r_tokens = count_tokens_batch(responses)
    p_tokens = count_tokens_batch(prompts)
    out = np.zeros((len(responses), len(RESPONSE_FEATURES)), dtype=np.float32)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        s = r.strip()
        n = max(len(s), 1)
        out[i] = (
            np.log1p(len(s)),
            np.log1p(r_tokens[i]),
            s.count("\n") + 1 if s else 0,
            float(not s),
            float(bool(_REFUSAL.search(s[:500]))),
            float(bool(_LETTER.match(s))),
            float(bool(_NUMBER.match(s))),
            float("```" in s),
            len(_CODE.findall(s)),
            float(bool(_ANSWER_LINE.search(s))),
            sum(c.isdigit() for c in s) / n,
            float(len(_CHOICES.findall(focus_text(p))) >= 2),
            np.log1p(p_tokens[i]),
        )
    return out


@dataclass(frozen=True)
class ScorerParams:
    """LightGBM settings and the CV protocol."""

    threshold: float = 0.5
    embedding_dims: int = 16
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 40
    feature_fraction: float = 0.7
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    folds: int = 5
    seed: int = 0

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
            "deterministic": True,
            "verbose": -1,
        }


class ResponseScorer:
    """P(answer meets the target) for (prompt, answer, model) rows (see module docstring)."""

    def __init__(self, embedder: Embedder, params: ScorerParams | None = None) -> None:
        self.embedder = embedder
        self.params = params or ScorerParams()

    # ---- features -------------------------------------------------------------------------------
    def _embed(self, texts: Sequence[str], cache: EmbeddingCache | None) -> np.ndarray:
        if cache is not None:
            return cache.encode(self.embedder, texts, progress=False)
        return self.embedder.encode(texts)

    def _embed_rows(
        self, prompts: Sequence[str], responses: Sequence[str], cache: EmbeddingCache | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(prompt focus-text embeddings, answer embeddings), each text embedded once."""
        focus = [focus_text(p) for p in prompts]
        # an empty text can embed to a zero vector: embed a placeholder instead
        answers = [r if r.strip() else "(empty)" for r in responses]
        uniq = list(dict.fromkeys([*focus, *answers]))
        pos = {t: i for i, t in enumerate(uniq)}
        vecs = self._embed(uniq, cache)
        return vecs[[pos[t] for t in focus]], vecs[[pos[t] for t in answers]]

    def _design(
        self, p_emb: np.ndarray, r_emb: np.ndarray, prompts: Sequence[str], responses: Sequence[str],
        models: Sequence[str],
    ) -> np.ndarray:
        cos = np.sum(p_emb * r_emb, axis=1, keepdims=True)
        model_idx = np.array([self.models_.index(m) if m in self.models_ else np.nan for m in models], dtype=np.float64)
        return np.hstack(
            [
                (p_emb - self.p_mean_) @ self.p_components_.T,
                (r_emb - self.r_mean_) @ self.r_components_.T,
                cos,
                response_features(prompts, responses),
                model_idx[:, None],
            ]
        ).astype(np.float32)

    @staticmethod
    def _check_lengths(prompts: Sequence[str], responses: Sequence[str], models: Sequence[str]) -> None:
        if not (len(prompts) == len(responses) == len(models)):
            raise ValueError(
                f"prompts, responses and models must have the same length, got "
                f"{len(prompts)}, {len(responses)}, {len(models)}"
            )

    # ---- fit / score ----------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, cache: EmbeddingCache | None = None) -> ResponseScorer:
        """Fit on long-format logs with the columns prompt, response, model, quality (rows with a
        missing response or quality are skipped and counted in ``n_skipped_``)."""
        missing = {"prompt", "response", "model", "quality"} - set(df.columns)
        if missing:
            raise ValueError(f"scorer training logs need the columns prompt, response, model, quality; "
                             f"missing {sorted(missing)}")
        p = self.params
        keep = df["prompt"].notna() & df["response"].notna() & df["quality"].notna() & df["model"].notna()
        self.n_skipped_ = int((~keep).sum())
        rows = df[keep]
        if len(rows) < 20:
            raise ValueError(f"scorer training needs at least 20 rows with a response and a quality, got {len(rows)}")
        prompts = rows["prompt"].astype(str).tolist()
        responses = rows["response"].astype(str).tolist()
        models = rows["model"].astype(str).tolist()
        y = (rows["quality"].to_numpy(dtype=np.float64) >= p.threshold - 1e-9).astype(np.float32)
        if len(np.unique(y)) < 2:
            raise ValueError("scorer training rows are all successes or all failures: nothing to learn")
        self.models_ = sorted(set(models))

        p_emb, r_emb = self._embed_rows(prompts, responses, cache)
        self.p_mean_, self.p_components_ = _pca(p_emb, p.embedding_dims, p.seed)
        self.r_mean_, self.r_components_ = _pca(r_emb, p.embedding_dims, p.seed)
        X = self._design(p_emb, r_emb, prompts, responses, models)
        cats = [X.shape[1] - 1]

        groups = pd.factorize(rows["prompt"].astype(str))[0]
        n_folds = max(2, min(p.folds, len(np.unique(groups))))
        best, oof = [], np.full(len(y), np.nan)
        for tr, va in GroupKFold(n_folds).split(X, y, groups):
            dtr = lgb.Dataset(X[tr], y[tr], categorical_feature=cats, free_raw_data=False)
            dva = lgb.Dataset(X[va], y[va], categorical_feature=cats, reference=dtr)
            b = lgb.train(
                p.lgb_params(), dtr, num_boost_round=p.max_rounds, valid_sets=[dva],
                callbacks=[lgb.early_stopping(p.early_stopping_rounds, verbose=False)],
            )
            best.append(int(b.best_iteration or p.max_rounds))
            oof[va] = b.predict(X[va], num_iteration=b.best_iteration)
        self.cv_best_iterations_ = best
        self.n_rounds_ = max(1, int(np.median(best)))
        self.cv_auc_ = float(roc_auc_score(y, oof)) if len(np.unique(y)) > 1 else float("nan")
        self.n_rows_ = int(len(y))
        self.booster_ = lgb.train(
            p.lgb_params(), lgb.Dataset(X, y, categorical_feature=cats), num_boost_round=self.n_rounds_
        )
        return self

    def score(self, prompts: Sequence[str], responses: Sequence[str], models: Sequence[str]) -> np.ndarray:
        """(n,) probabilities that each answer meets the target."""
        self._check_lengths(prompts, responses, models)
        if len(prompts) == 0:
            return np.zeros(0)
        responses = [r or "" for r in responses]
        p_emb, r_emb = self._embed_rows(prompts, responses, None)
        X = self._design(p_emb, r_emb, prompts, responses, models)
        threads = 1 if len(X) <= 64 else 0
        return np.asarray(self.booster_.predict(X, num_threads=threads), dtype=np.float64)

    # ---- persistence (LightGBM native text, JSON, NumPy; no pickles) ----------------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(folder / BOOSTER_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "embedder": {"spec": self.embedder.spec, "fingerprint": self.embedder.fingerprint},
            "params": asdict(self.params),
            "models": self.models_,
            "features": [f"prompt_pc{i}" for i in range(len(self.p_components_))]
            + [f"response_pc{i}" for i in range(len(self.r_components_))]
            + ["prompt_response_cosine", *RESPONSE_FEATURES, "model"],
            "n_rounds": self.n_rounds_,
            "cv_best_iterations": self.cv_best_iterations_,
            "cv_auc": self.cv_auc_,
            "n_rows": self.n_rows_,
            "n_skipped": self.n_skipped_,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))
        np.savez_compressed(
            folder / ARRAYS_FILE, p_mean=self.p_mean_, p_components=self.p_components_,
            r_mean=self.r_mean_, r_components=self.r_components_,
        )
        return folder

    @classmethod
    def load(cls, folder: Path, embedder: Embedder | None = None, embedders_dir: Path | None = None) -> ResponseScorer:
        """Load a saved scorer. ``embedder``: the one it was trained with (checked by fingerprint;
        default: loaded from the spec in ``scorer.json``, under ``embedders_dir``)."""
        meta = json.loads((folder / META_FILE).read_text())
        want = meta["embedder"]
        if embedder is None:
            from llmroute.config import Settings
            from llmroute.router.embedder import load_embedder

            embedder = load_embedder(want["spec"], embedders_dir or Settings().embedders_dir)
        if embedder.fingerprint != want["fingerprint"]:
            raise EmbedderMismatchError(
                f"scorer in {folder} was trained with embedder '{want['spec']}' (fingerprint "
                f"{want['fingerprint']}), but the embedder at hand is '{embedder.spec}' (fingerprint "
                f"{embedder.fingerprint})"
            )
        obj = cls(embedder, ScorerParams(**meta["params"]))
        obj.booster_ = lgb.Booster(model_file=str(folder / BOOSTER_FILE))
        obj.models_ = list(meta["models"])
        obj.n_rounds_ = int(meta["n_rounds"])
        obj.cv_best_iterations_ = list(meta["cv_best_iterations"])
        obj.cv_auc_ = float(meta["cv_auc"])
        obj.n_rows_ = int(meta["n_rows"])
        obj.n_skipped_ = int(meta["n_skipped"])
        with np.load(folder / ARRAYS_FILE) as z:
            obj.p_mean_, obj.p_components_ = z["p_mean"], z["p_components"]
            obj.r_mean_, obj.r_components_ = z["r_mean"], z["r_components"]
        return obj


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
) -> ResponseScorer:
    """Fit a :class:`ResponseScorer` on long-format logs with responses and save it to ``folder``
    (typically ``<router folder>/scorer``)."""
    scorer = ResponseScorer(embedder, ScorerParams(threshold=threshold, seed=seed)).fit(df, cache)
    scorer.save(folder)
    print(
        f"response scorer: {scorer.n_rows_} rows ({scorer.n_skipped_} skipped without response/quality), "
        f"{scorer.n_rounds_} rounds (CV best {scorer.cv_best_iterations_}), CV AUC {scorer.cv_auc_:.3f}; "
        f"saved to {folder}"
    )
    return scorer


def scorer_in(router_folder: Path, embedder: Embedder) -> ResponseScorer | None:
    """The scorer saved in ``<router folder>/scorer`` (loaded with the router's ``embedder``), or None
    when the router has none."""
    folder = Path(router_folder).expanduser() / SCORER_DIR
    if not (folder / META_FILE).is_file():
        return None
    return ResponseScorer.load(folder, embedder)
