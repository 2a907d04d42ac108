"""The answer scorer's rows as codes (no per-row strings or tuples) give the same augmented rows, design
matrix, folds and boosters as the per-row string protocol they replaced."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupKFold

from llmroute.data.importers import read_logs
from llmroute.router.quality_model import fit_fold
from llmroute.training.scorer import ResponseScorer, earlier_contexts
from llmroute.training.scorer_rows import ScorerRows, earlier_rows
from tests.training.test_scorer import HashEmbedder

REPO = Path(__file__).resolve().parents[2]


def _logs(n_prompts: int) -> pd.DataFrame:
    df = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    return df[df["prompt_id"].isin(sorted(df["prompt_id"].unique())[:n_prompts])].reset_index(drop=True)


def test_codes_round_trip_and_skip_incomplete_rows() -> None:
    df = pd.DataFrame({
        "prompt": ["a", "b", "a", None, 7, "7"],
        "response": ["x", "y", "x", "z", "w", None],
        "model": ["m1", "m2", "m2", "m1", "m1", "m1"],
        "quality": [1.0, 0.0, 0.4, 1.0, 0.6, 1.0],
        "cost_usd": [1.0, 2.0, 3.0, 4.0, np.nan, 1.0],
    })
    data = ScorerRows.from_frame(df, 0.5)
    assert data.n_skipped == 2 and len(data) == 4
    prompts, responses, models, ctx = data.texts(np.arange(4))
    assert prompts == ["a", "b", "a", "7"] and responses == ["x", "y", "x", "w"] and models == ["m1", "m2", "m2", "m1"]
    assert ctx == [()] * 4 and data.y.tolist() == [1.0, 0.0, 0.0, 1.0] and data.y.dtype == np.float32
    assert data.prompt.dtype == np.int32 and data.prompts == ["a", "b", "7"]
    assert data.mean_cost() == {"m1": 1.0, "m2": 2.5}
    assert data.model_prior() == {"m1": 1.0, "m2": 0.0}
    with pytest.raises(ValueError, match=r"missing \['response'\]"):
        ScorerRows.from_frame(df.drop(columns="response"), 0.5)


def test_str_equal_values_share_a_code() -> None:
    df = pd.DataFrame({"prompt": [7, "7"], "response": ["x", "x"], "model": ["m", "m"], "quality": [1.0, 0.0]})
    data = ScorerRows.from_frame(df, 0.5)
    assert data.prompts == ["7"] and data.prompt.tolist() == [0, 0]


def test_earlier_rows_draw_what_the_string_protocol_draws() -> None:
    df = _logs(80)
    data = ScorerRows.from_frame(df, 0.5)
    prompts, responses, models, _ = data.texts(np.arange(len(data)))
    mean_cost = data.mean_cost()
    want = earlier_contexts(prompts, models, responses, mean_cost, seed=3)
    at, prev = earlier_rows(data, mean_cost, np.random.default_rng(3))
    assert at.tolist() == [i for i, _ in want]
    _, _, _, ctx = data.texts(at, prev)
    assert ctx == [e for _, e in want]
    assert len(at) > len(data) // 3 and (prev[:, 0] >= 0).all()


def test_earlier_rows_of_parts_in_turn_equal_the_whole() -> None:
    """Parts that hold whole prompts, drawn one after the other with one generator: the same draws
    (what the Dask workers do, partition by partition)."""
    df = _logs(40).sort_values("prompt_id", kind="stable").reset_index(drop=True)
    ids = df["prompt_id"].to_numpy()
    changes = np.nonzero(ids[1:] != ids[:-1])[0] + 1  # where a new prompt's rows begin (rows are grouped by prompt)
    cut = int(changes[len(changes) // 2])
    whole = ScorerRows.from_frame(df, 0.5)
    mean_cost = whole.mean_cost()
    at, prev = earlier_rows(whole, mean_cost, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    got_at, got_prev = [], []
    for lo, hi in ((0, cut), (cut, len(df))):
        part = ScorerRows.from_frame(df.iloc[lo:hi], 0.5)
        a, p = earlier_rows(part, mean_cost, rng)
        got_at.append(a + lo)
        got_prev.append(np.where(p >= 0, p + lo, -1))
    assert np.concatenate(got_at).tolist() == at.tolist()
    np.testing.assert_array_equal(np.concatenate(got_prev), prev)


@pytest.mark.slow  # fits a scorer and its reference (about 10 s on a busy machine)
def test_fit_equals_the_per_row_string_protocol() -> None:
    """The fitted scorer's CV and final booster equal LightGBM fitted on the design matrix built the way
    it was before (per-row strings, earlier-answer tuples, groups factorized from the prompt texts)."""
    df = _logs(40)
    scorer = ResponseScorer(HashEmbedder()).fit(df)  # type: ignore[arg-type]
    p = scorer.params
    prompts = df["prompt"].astype(str).tolist()
    responses = df["response"].astype(str).tolist()
    models = df["model"].astype(str).tolist()
    y = (df["quality"].to_numpy(dtype=np.float64) >= p.threshold - 1e-9).astype(np.float32)
    mean_cost = {str(m): float(c) for m, c in df["cost_usd"].groupby(df["model"].astype(str)).mean().items()}
    extra = earlier_contexts(prompts, models, responses, mean_cost, p.seed)
    idx = np.concatenate([np.arange(len(df)), np.array([i for i, _ in extra], dtype=int)])
    earlier = [()] * len(df) + [e for _, e in extra]
    p_emb, r_emb = scorer._embed_rows([prompts[i] for i in idx], [responses[i] for i in idx], None)
    X = scorer.design(p_emb, r_emb, [prompts[i] for i in idx], [responses[i] for i in idx],
                      [models[i] for i in idx], earlier)
    yy = y[idx]
    groups = pd.factorize(pd.Series([prompts[i] for i in idx]))[0]
    best = []
    for tr, _ in GroupKFold(p.folds).split(X, yy, groups):
        mask = np.zeros(len(yy), dtype=bool)
        mask[tr] = True
        best.append(fit_fold(p.lgb_params(), X, yy, mask, [X.shape[1] - 1], p.max_rounds,
                             p.early_stopping_rounds).best_iteration)
    assert scorer.cv_best_iterations_ == best
    ref = lgb.train(p.lgb_params(), lgb.Dataset(X, yy, categorical_feature=[X.shape[1] - 1]),
                    num_boost_round=max(1, int(np.median(best))))
    assert scorer.booster_.model_to_string() == ref.model_to_string()
    assert set(scorer.prompt_fold_) == set(prompts)


def test_pca_sample_is_the_smallest_keys_wherever_the_texts_are() -> None:
    from llmroute.training.scorer_rows import pca_sample, text_keys

    texts = [f"answer {i}" for i in range(50)]
    keys = text_keys(texts)
    assert keys.dtype == np.uint64 and len(set(keys.tolist())) == 50
    np.testing.assert_array_equal(pca_sample(keys, 50), np.arange(50))
    picked = {texts[i] for i in pca_sample(keys, 10)}
    shuffled = texts[::-1]
    assert {shuffled[i] for i in pca_sample(text_keys(shuffled), 10)} == picked
    assert picked == {t for t, k in zip(texts, keys.tolist()) if k <= sorted(keys.tolist())[9]}
