"""Training on a Dask LocalCluster: the same router artifact and the same cross-validation as in one
process; bad --dask values and duplicate rows across partitions fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmroute.config import load_settings
from llmroute.data.schema import LogValidationError
from llmroute.training.dask_backend import DaskSpec, DaskSpecError, PromptTable, _join
from llmroute.training.scorer import SCORER_DIR, ResponseScorer
from llmroute.training.train import TrainConfig, train_router
from tests.router.helpers import ROUTERBENCH, write_slice


@pytest.mark.parametrize(
    ("text", "expected"),
    [("local:2", DaskSpec(workers=2)), ("tcp://10.0.0.5:8786", DaskSpec(address="tcp://10.0.0.5:8786"))],
)
def test_spec_parses(text: str, expected: DaskSpec) -> None:
    assert DaskSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["local:0", "local:x", "local:", "scheduler:8786", "tcp://"])
def test_bad_spec_names_the_forms(text: str) -> None:
    with pytest.raises(DaskSpecError, match=r"local:N") as err:
        DaskSpec.parse(text)
    assert repr(text) in str(err.value)


def _table(ids: list[str], models: list[str]) -> PromptTable:
    uniq = list(dict.fromkeys(ids))
    return PromptTable(
        np.array(uniq, dtype=object), np.array([f"text {i}" for i in uniq], dtype=object),
        np.array([None] * len(uniq), dtype=object), np.ones(len(uniq)),
        np.ones((len(uniq), 4), dtype=np.float32), np.zeros((len(uniq), 2), dtype=np.float32),
        pd.DataFrame({"prompt_id": ids, "model": models, "quality": 1.0, "cost_usd": 0.1, "cost_is_estimated": False}),
    )


def test_join_keeps_file_order_across_partitions() -> None:
    # prompt "b" has rows in both partitions: it appears once, where it was first seen
    out = _join([_table(["a", "b"], ["m1", "m1"]), _table(["b", "c"], ["m2", "m1"])], Path("x.parquet"))
    assert out.logs.prompt_ids == ("a", "b", "c")
    assert out.logs.models == ("m1", "m2")
    assert np.isnan(out.logs.quality[0, 1]) and out.logs.quality[1, 1] == 1.0
    assert out.embeddings.shape == (3, 4)


def test_duplicate_pair_across_partitions_names_both() -> None:
    with pytest.raises(LogValidationError, match=r"duplicate \(prompt_id, model\) = \('b', 'm1'\) in partitions 1, 2"):
        _join([_table(["a", "b"], ["m1", "m1"]), _table(["b"], ["m1"])], Path("x.parquet"))


@pytest.mark.slow
def test_dask_training_matches_single_process(tmp_path: Path) -> None:
    """Two worker processes, four partitions: the same folds, fold models and out-of-fold
    probabilities as one process, for the quality model and the answer scorer; the final boosters are
    data-parallel, so predictions agree closely. The artifact has the same files (scorer included)."""
    src = write_slice(ROUTERBENCH / "train.parquet", tmp_path / "slice.parquet", 150, seed=3)
    parted = tmp_path / "parted"  # four files: four partitions
    parted.mkdir()
    df = pd.read_parquet(src)
    step = -(-len(df) // 4)
    for i in range(4):
        df.iloc[i * step : (i + 1) * step].to_parquet(parted / f"part-{i}.parquet", index=False)
    settings = load_settings(home=tmp_path / "home")
    single, single_dir = train_router(src, settings, TrainConfig(embedder="minilm"), out_dir=tmp_path / "single")
    dask, dask_dir = train_router(parted, settings, TrainConfig(embedder="minilm", dask="local:2"), out_dir=tmp_path / "dask")

    def files(folder: Path) -> set[str]:
        return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}

    assert files(dask_dir) == files(single_dir)
    assert any(f.startswith("scorer/") for f in files(dask_dir))
    sa, sb = (ResponseScorer.load(d / SCORER_DIR, single.embedder) for d in (single_dir, dask_dir))  # type: ignore[arg-type]
    assert sb.cv_best_iterations_ == sa.cv_best_iterations_ and sb.n_rounds_ == sa.n_rounds_
    assert sb.cv_auc_ == pytest.approx(sa.cv_auc_, abs=1e-12)
    # the cascade's cells scored on the workers that hold the answers: the same operating points
    assert sa.operating_points is not None and sb.operating_points == sa.operating_points
    qa, qb = single.quality, dask.quality  # type: ignore[attr-defined]
    assert qb.cv_best_iterations_ == qa.cv_best_iterations_
    assert qb.n_rounds_ == qa.n_rounds_
    np.testing.assert_allclose(qb.oof_probs_, qa.oof_probs_, atol=1e-9)
    np.testing.assert_array_equal(qb.index_.embeddings, qa.index_.embeddings)
    assert dask.info.config is not None and dask.info.config["dask"] == "local:2"  # type: ignore[attr-defined]
    prompts = [str(p) for p in df.drop_duplicates("prompt_id")["prompt"].head(40)]
    pa, pb = single.prepare(prompts), dask.prepare(prompts)
    probs_a, probs_b = single.predict(pa)[0], dask.predict(pb)[0]
    assert np.abs(probs_a - probs_b).mean() < 0.05
    answers = ["4", "I do not know."] * 20
    scored_a = sa.score(prompts, answers, [single.models[0]] * 40)
    scored_b = sb.score(prompts, answers, [single.models[0]] * 40)
    assert np.abs(scored_a - scored_b).mean() < 0.05
