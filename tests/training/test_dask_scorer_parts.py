"""The answer scorer's Dask steps, run in this process on parts of the logs: the same design rows,
augmented rows and cascade inputs as the whole logs in one process, also when a prompt's rows span two
partitions (its earlier answers then come from the other partition)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmroute.data.importers import read_logs
from llmroute.training import dask_scorer, worker_embedder
from llmroute.training.dask_scorer import (
    ScorerState,
    answer_part,
    design_part,
    has_answer_matrix,
    summarize,
)
from llmroute.training.scorer import ResponseScorer, _pca
from llmroute.training.scorer_rows import MAX_EARLIER, ScorerRows, draw_earlier, earlier_rows
from tests.training.test_scorer import HashEmbedder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def hash_embedder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    monkeypatch.setitem(worker_embedder._LOADED, f"hash\0{tmp_path}", HashEmbedder())
    return "hash", str(tmp_path), str(tmp_path / "cache.sqlite")


def _logs() -> pd.DataFrame:
    df = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    return df[df["prompt_id"].isin(sorted(df["prompt_id"].unique())[:30])].reset_index(drop=True)


def test_parts_give_the_whole_logs_design(hash_embedder: tuple[str, str, str]) -> None:
    spec, folder, cache = hash_embedder
    df = _logs()
    cut = len(df) // 2 + 3  # not at a prompt boundary: one prompt's rows in both parts
    assert df["prompt_id"].iloc[cut - 1] == df["prompt_id"].iloc[cut]
    parts = [answer_part(df.iloc[:cut], 0.5), answer_part(df.iloc[cut:], 0.5)]
    sums = [summarize(p, spec, folder, cache) for p in parts]

    whole = ScorerRows.from_frame(df, 0.5)
    scorer = ResponseScorer(HashEmbedder())  # type: ignore[arg-type]
    scorer.models_ = sorted(whole.models)
    scorer.model_prior_ = whole.model_prior()
    vecs, p_at, r_at, _ = scorer._embed_codes(whole, None)
    scorer.p_mean_, scorer.p_components_ = _pca(vecs[np.unique(p_at)], 16, 0)
    scorer.r_mean_, scorer.r_components_ = _pca(vecs[np.unique(r_at)], 16, 0)
    at, prev = earlier_rows(whole, whole.mean_cost(), np.random.default_rng(0))
    want_alone = scorer.design_rows(vecs, p_at, r_at, whole, np.arange(len(whole)),
                                    np.full((len(whole), MAX_EARLIER), -1))
    want_aug = scorer.design_rows(vecs, p_at, r_at, whole, at, prev)

    # the client's draws from the summaries' numbers alone
    models = sorted({m for s in sums for m in s.models})
    model = np.concatenate([np.array([models.index(m) for m in s.models])[s.model] for s in sums])
    group = pd.factorize(np.concatenate([s.group for s in sums]))[0]
    cost = whole.mean_cost()
    at2, prev2 = draw_earlier(group, model, np.array([cost.get(m, np.inf) for m in models]), np.random.default_rng(0))
    np.testing.assert_array_equal(at2, at)
    np.testing.assert_array_equal(prev2, prev)
    np.testing.assert_array_equal(group, whole.prompt)

    state = ScorerState(scorer.params, scorer.models_, scorer.model_prior_, scorer.p_mean_, scorer.p_components_,
                        scorer.r_mean_, scorer.r_components_)
    offsets = np.array([0, len(parts[0].rows)])
    designs = []
    crossing = 0
    for k in range(2):
        mine = (at >= offsets[k]) & (at < offsets[k] + len(parts[k].rows))
        crossing += int(((prev[mine] >= 0) & ((prev[mine] < offsets[k]) | (prev[mine] >= offsets[k] + len(parts[k].rows)))).sum())
        designs.append(design_part(k, parts, offsets, at[mine], prev[mine], state, spec, folder, cache))
    assert crossing > 0  # the spanning prompt's earlier answers came from the other part
    whole_X = np.concatenate([want_alone, want_aug])
    np.testing.assert_array_equal(np.concatenate(dask_scorer._blocks(designs)), whole_X)
    # a fold task's training and validation rows, cut part by part: the whole matrix's rows, in order
    in_train = np.random.default_rng(1).random(len(whole_X)) < 0.8
    X_train, X_valid = dask_scorer._split(designs, in_train)
    np.testing.assert_array_equal(X_train, whole_X[in_train])
    np.testing.assert_array_equal(X_valid, whole_X[~in_train])
    with pytest.raises(ValueError, match="fold flags"):
        dask_scorer._split(designs, in_train[:-1])

    has = has_answer_matrix(sums, sorted(df["prompt_id"].unique()), models)
    assert has.sum() == len(whole) and has.shape == (30, len(models))
