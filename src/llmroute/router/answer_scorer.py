"""The post-call answer scorer at inference time: P(an answer meets the quality target | prompt,
answer, model, the answers received before it).

The router decides *before* a call; the scorer judges the answer *after* it, so the cascade can
escalate on a weak answer and the ensembles can pick among answers. This module holds what scoring
needs (features, the fitted arrays, loading); fitting lives in :mod:`llmroute.training.scorer`, so
the service and the offline evaluation score with the very same code.

Features of one (prompt, answer, model, earlier answers) row, in this order:

- a PCA projection of the prompt's focus-text embedding (:func:`llmroute.router.text.focus_text`) and
  of the answer's embedding, both with the router's embedder, and their cosine similarity;
- cheap answer features (:data:`RESPONSE_FEATURES`): length, tokens, lines, empty, refusal markers,
  a single choice letter or number, a code block, an ``Answer:`` line, digit share;
- (format 2) agreement with the earlier answers of the same request
  (:data:`llmroute.router.agreement.AGREEMENT_FEATURES`; NaN when there are none), including the
  prior success rate (on the training logs) of the earlier models that agree and that disagree;
- the model, as a LightGBM categorical feature (unknown models get the missing category).

Stored in a folder as LightGBM native text, JSON and a NumPy ``.npz`` (no pickles). A format-1 folder
(no agreement features) still loads and scores as before. The folder may also hold the cascade's
operating points fitted with this scorer (:data:`llmroute.router.cascade_policy.OPERATING_POINTS_FILE`),
loaded into :attr:`ResponseScorer.operating_points`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmroute.data.tokens import count_tokens_batch
from llmroute.router.agreement import AGREEMENT_FEATURES, agreement_features
from llmroute.router.cascade_policy import OPERATING_POINTS_FILE, OperatingPoints
from llmroute.router.embedder import Embedder, EmbedderMismatchError, EmbeddingCache, load_embedder
from llmroute.router.native_booster import BoosterPredictor, NativeBooster
from llmroute.router.neighbours import rowwise_matmul
from llmroute.router.text import focus_text

FORMAT_VERSION = 2
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


def _tokens(texts: Sequence[str]) -> list[int]:
    """Token counts, each distinct text counted once."""
    uniq = list(dict.fromkeys(texts))
    counts = dict(zip(uniq, count_tokens_batch(uniq)))
    return [counts[t] for t in texts]


def response_features(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """One row of :data:`RESPONSE_FEATURES` per (prompt, response) (float32)."""
    r_tokens = _tokens(responses)
    p_tokens = _tokens(prompts)
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


def _response_features_once(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """:func:`response_features`, computed once per distinct (prompt, response) pair (a replay scores
    the same answer with many different earlier answers)."""
    keys = list(zip(prompts, responses))
    uniq = list(dict.fromkeys(keys))
    if len(uniq) == len(keys):
        return response_features(prompts, responses)
    pos = {k: i for i, k in enumerate(uniq)}
    feats = response_features([p for p, _ in uniq], [r for _, r in uniq])
    return feats[[pos[k] for k in keys]]


@dataclass(frozen=True)
class ScorerParams:
    """LightGBM settings and the CV protocol (``agreement``: use the agreement features and train on
    rows augmented with earlier answers; False reproduces the format-1 scorer)."""

    threshold: float = 0.5
    embedding_dims: int = 16
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 40
    feature_fraction: float = 0.7
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    folds: int = 5
    seed: int = 0
    agreement: bool = True

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


Earlier = Sequence[Sequence[tuple[str, str]]]  # per row: (model, answer) received before it, oldest first


def answer_text(response: str) -> str:
    """The text embedded for an answer: the answer, or a placeholder for an empty one (an empty text
    can embed to a zero vector)."""
    return response if response.strip() else "(empty)"


class ResponseScorer:
    """P(answer meets the target) for (prompt, answer, model[, earlier answers]) rows.

    Guarantee: :meth:`score` gives a row the same probability whatever the other rows of the call
    (without a cache; with one, as exactly as the cached embeddings), so the service's cascade (one
    row a call) and the offline replay (batches) agree."""

    operating_points: OperatingPoints | None = None
    # the fitted state: set by fitting (llmroute.training.scorer) or by :meth:`load`
    booster_: BoosterPredictor  # lightgbm.Booster once fitted, NativeBooster once loaded (no LightGBM package)
    models_: list[str]
    n_rounds_: int
    cv_best_iterations_: list[int]
    cv_auc_: float
    n_rows_: int
    n_skipped_: int
    model_prior_: dict[str, float]
    p_mean_: np.ndarray
    p_components_: np.ndarray
    r_mean_: np.ndarray
    r_components_: np.ndarray

    def __init__(self, embedder: Embedder, params: ScorerParams | None = None) -> None:
        self.embedder = embedder
        self.params = params or ScorerParams()
        self.operating_points = None

    # ---- features -------------------------------------------------------------------------------
    def _embed(self, texts: Sequence[str], cache: EmbeddingCache | None) -> np.ndarray:
        """Embeddings through ``cache`` when given; else each row exactly as the text alone gets it (one
        call per text for an embedder whose rows depend on the batch, as a transformer's do)."""
        if cache is not None:
            return cache.encode(self.embedder, texts, progress=False)
        if len(texts) > 1 and not getattr(self.embedder, "independent_rows", False):
            return np.vstack([self.embedder.encode([t]) for t in texts])
        return self.embedder.encode(texts)

    def _embed_rows(
        self, prompts: Sequence[str], responses: Sequence[str], cache: EmbeddingCache | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(prompt focus-text embeddings, answer embeddings), each text embedded once."""
        vecs, p_pos, r_pos = self._embed_distinct(prompts, responses, cache)
        return vecs[p_pos], vecs[r_pos]

    def _embed_distinct(
        self, prompts: Sequence[str], responses: Sequence[str], cache: EmbeddingCache | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings of the distinct texts, each row's prompt focus-text position in them, each row's
        answer position): the per-row embeddings without holding a copy per row."""
        focus = [focus_text(p) for p in prompts]
        answers = [answer_text(r) for r in responses]
        uniq = list(dict.fromkeys([*focus, *answers]))
        pos = {t: i for i, t in enumerate(uniq)}
        vecs = self._embed(uniq, cache)
        return vecs, np.array([pos[t] for t in focus], dtype=np.int64), np.array([pos[t] for t in answers], dtype=np.int64)

    def design(
        self, p_emb: np.ndarray, r_emb: np.ndarray, prompts: Sequence[str], responses: Sequence[str],
        models: Sequence[str], earlier: Earlier | None = None,
    ) -> np.ndarray:
        """The feature matrix of the rows (see module docstring)."""
        cos = np.sum(p_emb * r_emb, axis=1, keepdims=True)
        model_idx = np.array([self.models_.index(m) if m in self.models_ else np.nan for m in models], dtype=np.float64)
        parts = [  # row by row: a row's features do not depend on the other rows of the batch
            rowwise_matmul(p_emb - self.p_mean_, self.p_components_.T),
            rowwise_matmul(r_emb - self.r_mean_, self.r_components_.T),
            cos,
            _response_features_once(prompts, responses),
        ]
        if self.params.agreement:
            ctx = earlier if earlier is not None else [()] * len(responses)
            prior = getattr(self, "model_prior_", {})
            parts.append(agreement_features(
                responses, [[a for _, a in e] for e in ctx], [[prior.get(m, np.nan) for m, _ in e] for e in ctx]
            ))
        parts.append(model_idx[:, None])
        return np.hstack(parts).astype(np.float32)

    def feature_names(self) -> list[str]:
        return (
            [f"prompt_pc{i}" for i in range(len(self.p_components_))]
            + [f"response_pc{i}" for i in range(len(self.r_components_))]
            + ["prompt_response_cosine", *RESPONSE_FEATURES]
            + (list(AGREEMENT_FEATURES) if self.params.agreement else [])
            + ["model"]
        )

    @staticmethod
    def _check_lengths(
        prompts: Sequence[str], responses: Sequence[str], models: Sequence[str], earlier: Earlier | None
    ) -> None:
        if not (len(prompts) == len(responses) == len(models)) or (earlier is not None and len(earlier) != len(prompts)):
            raise ValueError(
                f"prompts, responses, models (and earlier) must have the same length, got "
                f"{len(prompts)}, {len(responses)}, {len(models)}"
                + (f", {len(earlier)}" if earlier is not None else "")
            )

    def features(
        self, prompts: Sequence[str], responses: Sequence[str], models: Sequence[str],
        earlier: Earlier | None = None, cache: EmbeddingCache | None = None,
    ) -> np.ndarray:
        """The design matrix for rows to score (embeddings through ``cache`` when given)."""
        self._check_lengths(prompts, responses, models, earlier)
        responses = [r or "" for r in responses]
        p_emb, r_emb = self._embed_rows(prompts, responses, cache)
        return self.design(p_emb, r_emb, prompts, responses, models, earlier)

    def score(
        self, prompts: Sequence[str], responses: Sequence[str], models: Sequence[str],
        earlier: Earlier | None = None, cache: EmbeddingCache | None = None,
    ) -> np.ndarray:
        """(n,) probabilities that each answer meets the target; ``earlier[i]``: the (model, answer) pairs
        the same request received before ``responses[i]`` (oldest first; ignored by a format-1 scorer)."""
        self._check_lengths(prompts, responses, models, earlier)
        if len(prompts) == 0:
            return np.zeros(0)
        X = self.features(prompts, responses, models, earlier, cache)
        threads = 1 if len(X) <= 64 else 0
        return np.asarray(self.booster_.predict(X, num_threads=threads), dtype=np.float64)

    # ---- persistence (LightGBM native text, JSON, NumPy; no pickles) ----------------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(folder / BOOSTER_FILE))
        meta = {
            "format_version": FORMAT_VERSION if self.params.agreement else 1,
            "embedder": {"spec": self.embedder.spec, "fingerprint": self.embedder.fingerprint},
            "params": asdict(self.params),
            "models": self.models_,
            "features": self.feature_names(),
            "n_rounds": self.n_rounds_,
            "cv_best_iterations": self.cv_best_iterations_,
            "cv_auc": self.cv_auc_,
            "n_rows": self.n_rows_,
            "n_skipped": self.n_skipped_,
            "model_prior": getattr(self, "model_prior_", {}),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))
        np.savez_compressed(
            folder / ARRAYS_FILE, p_mean=self.p_mean_, p_components=self.p_components_,
            r_mean=self.r_mean_, r_components=self.r_components_,
        )
        if self.operating_points is not None:
            self.operating_points.save(folder / OPERATING_POINTS_FILE)
        return folder

    @classmethod
    def load(cls, folder: Path, embedder: Embedder | None = None, embedders_dir: Path | None = None) -> ResponseScorer:
        """Load a saved scorer. ``embedder``: the one it was trained with (checked by fingerprint;
        without it, loaded from the spec in ``scorer.json`` under ``embedders_dir``, which is then required)."""
        meta = json.loads((folder / META_FILE).read_text())
        want = meta["embedder"]
        if embedder is None:
            if embedders_dir is None:
                raise ValueError(f"loading the scorer in {folder} needs its embedder or an embedders_dir")
            embedder = load_embedder(want["spec"], embedders_dir)
        if embedder.fingerprint != want["fingerprint"]:
            raise EmbedderMismatchError(
                f"scorer in {folder} was trained with embedder '{want['spec']}' (fingerprint "
                f"{want['fingerprint']}), but the embedder at hand is '{embedder.spec}' (fingerprint "
                f"{embedder.fingerprint})"
            )
        params = dict(meta["params"])
        params.setdefault("agreement", False)  # format 1: no agreement features
        obj = cls(embedder, ScorerParams(**params))
        obj.booster_ = NativeBooster.from_file(folder / BOOSTER_FILE)
        obj.models_ = list(meta["models"])
        obj.n_rounds_ = int(meta["n_rounds"])
        obj.cv_best_iterations_ = list(meta["cv_best_iterations"])
        obj.cv_auc_ = float(meta["cv_auc"])
        obj.n_rows_ = int(meta["n_rows"])
        obj.n_skipped_ = int(meta["n_skipped"])
        obj.model_prior_ = {str(k): float(v) for k, v in meta.get("model_prior", {}).items()}
        with np.load(folder / ARRAYS_FILE) as z:
            obj.p_mean_, obj.p_components_ = z["p_mean"], z["p_components"]
            obj.r_mean_, obj.r_components_ = z["r_mean"], z["r_components"]
        if (folder / OPERATING_POINTS_FILE).is_file():
            obj.operating_points = OperatingPoints.load(folder / OPERATING_POINTS_FILE)
        return obj


def scorer_in(router_folder: Path, embedder: Embedder) -> ResponseScorer | None:
    """The scorer saved in ``<router folder>/scorer`` (loaded with the router's ``embedder``), or None
    when the router has none."""
    folder = Path(router_folder).expanduser() / SCORER_DIR
    if not (folder / META_FILE).is_file():
        return None
    return ResponseScorer.load(folder, embedder)
