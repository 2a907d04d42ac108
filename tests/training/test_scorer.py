"""The post-call response scorer: learns something, round-trips through its folder, stores no pickles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from llmroute.data.importers import read_logs
from llmroute.router.embedder import Embedder, load_embedder
from llmroute.training.scorer import ResponseScorer, response_features, train_scorer
from tests.tiers import slow_fixture

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fitted:
    scorer: ResponseScorer
    folder: Path
    embedder: Embedder
    held_out: pd.DataFrame


@pytest.fixture(scope="module")
@slow_fixture("trains a scorer with the MiniLM transformer")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    """A scorer trained on 40 RouterBench prompts (x 11 models); the next 20 prompts are held out."""
    tmp = tmp_path_factory.mktemp("scorer")
    df = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    ids = sorted(df["prompt_id"].unique())
    train = df[df["prompt_id"].isin(ids[:40])]
    held_out = df[df["prompt_id"].isin(ids[40:60])].reset_index(drop=True)
    embedder = load_embedder("minilm", tmp / "embedders")
    scorer = train_scorer(train, embedder, tmp / "router" / "scorer", threshold=0.5, seed=0)
    return Fitted(scorer, tmp / "router" / "scorer", embedder, held_out)


def test_better_than_chance_on_held_out_prompts(fitted: Fitted) -> None:
    h = fitted.held_out
    p = fitted.scorer.score(h["prompt"].tolist(), h["response"].tolist(), h["model"].tolist())
    assert p.shape == (len(h),) and np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(h["quality"] >= 0.5, p) > 0.55


def test_save_load_gives_identical_scores_and_no_pickles(fitted: Fitted) -> None:
    h = fitted.held_out.head(30)
    args = (h["prompt"].tolist(), h["response"].tolist(), h["model"].tolist())
    loaded = ResponseScorer.load(fitted.folder, fitted.embedder)
    np.testing.assert_array_equal(loaded.score(*args), fitted.scorer.score(*args))
    names = sorted(p.name for p in fitted.folder.iterdir())
    assert names == ["scorer.json", "scorer_arrays.npz", "scorer_lightgbm.txt"]
    with np.load(fitted.folder / "scorer_arrays.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_unknown_model_and_empty_answer_are_scored(fitted: Fitted) -> None:
    p = fitted.scorer.score(["What is 2+2?", "Pick one: A) x B) y"], ["", "B"], ["not-a-model", "gpt-4-1106-preview"])
    assert p.shape == (2,) and np.all(np.isfinite(p))
    with pytest.raises(ValueError, match="same length"):
        fitted.scorer.score(["a"], ["b", "c"], ["m"])


def test_response_features_markers() -> None:
    f = response_features(["q", "q", "q", "q"], ["", "I'm sorry, I cannot help.", " (B) ", "```python\ndef f(): return 1\n```"])
    names = ["is_empty", "refusal", "single_choice_letter", "code_block"]
    from llmroute.training.scorer import RESPONSE_FEATURES

    cols = [RESPONSE_FEATURES.index(n) for n in names]
    np.testing.assert_array_equal(f[:, cols], np.eye(4, dtype=np.float32))


def test_rejects_logs_without_responses(tmp_path: Path, fitted: Fitted) -> None:
    df = fitted.held_out.drop(columns=["response"])
    with pytest.raises(ValueError, match="missing \\['response'\\]"):
        train_scorer(df, fitted.embedder, tmp_path / "scorer")


class HashEmbedder:
    """A deterministic embedder (each text's vector from its hash), fast enough for a plain test."""

    spec, fingerprint, dim, independent_rows = "hash", "hash-1", 32, True

    def encode(self, texts: list[str]) -> np.ndarray:
        import zlib

        out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts]) \
            if texts else np.zeros((0, self.dim))
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32) if len(out) else out.astype(np.float32)


@pytest.mark.slow  # fits the scorer twice (about 10 s each on a busy machine)
def test_chunked_design_fits_the_same_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training design matrix built a few rows at a time (and the PCAs fitted on the distinct
    embeddings) gives the same features, CV and booster as building it in one piece."""
    from llmroute.training import scorer as scorer_mod

    df = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    df = df[df["prompt_id"].isin(sorted(df["prompt_id"].unique())[:30])].reset_index(drop=True)

    def fit() -> ResponseScorer:
        return ResponseScorer(HashEmbedder()).fit(df)  # type: ignore[arg-type]

    whole = fit()
    monkeypatch.setattr(scorer_mod, "DESIGN_CHUNK", 37)
    chunked = fit()
    np.testing.assert_array_equal(whole.p_components_, chunked.p_components_)
    np.testing.assert_array_equal(whole.r_components_, chunked.r_components_)
    assert whole.cv_best_iterations_ == chunked.cv_best_iterations_
    assert whole.booster_.model_to_string() == chunked.booster_.model_to_string()
    # and the same rows as the per-row design of one call
    from llmroute.training.scorer_rows import ScorerRows

    data = ScorerRows.from_frame(df, 0.5)
    vecs, p_at, r_at = chunked._embed_distinct(data.prompts, data.responses, None)
    idx = np.arange(len(df))
    prompts, responses, models = df["prompt"].tolist(), df["response"].tolist(), df["model"].tolist()
    p_emb, r_emb = chunked._embed_rows(prompts, responses, None)
    np.testing.assert_array_equal(
        chunked.design_rows(vecs, p_at, r_at, data, idx, np.full((len(df), 2), -1)),
        chunked.design(p_emb, r_emb, prompts, responses, models, [()] * len(df)),
    )
