"""train_router on a 250-prompt RouterBench slice: what it writes and records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmroute.artifacts.loading import LATEST, latest_router_dir
from llmroute.config import load_settings
from llmroute.data.importers import read_logs
from llmroute.data.schema import LogValidationError
from llmroute.data.wide import to_wide
from llmroute.router.decision_rules import rule_names
from llmroute.training import train as train_mod
from llmroute.training.train import TrainConfig, data_fingerprint, train_router
from tests.router.helpers import ROUTERBENCH_MODELS, CountingEmbedder, Trained


def test_router_folder_and_latest_pointer(small: Trained) -> None:
    settings = load_settings(home=small.home)
    assert (settings.routers_dir / LATEST).read_text().strip() == str(small.folder.resolve())
    assert latest_router_dir(settings) == small.folder.resolve()
    meta = json.loads((small.folder / "router.json").read_text())
    assert meta["models"] == list(ROUTERBENCH_MODELS)
    assert meta["version"] == small.router.version  # type: ignore[attr-defined]
    assert meta["embedder"]["spec"] == "minilm"
    assert meta["default_rule"] in rule_names() and set(meta["knob_tables"]) == set(rule_names())


def test_recorded_training_info(small: Trained) -> None:
    r = small.router
    info = r.info  # type: ignore[attr-defined]
    assert info.n_prompts == 250
    assert info.n_outcomes == 250 * len(ROUTERBENCH_MODELS)
    assert info.tasks == ("arc-challenge", "mbpp", "winogrande")
    assert info.config["embedder"] == "minilm" and info.success_threshold == info.config["success_threshold"]
    assert info.train_logs_sha256_16 == data_fingerprint(small.train_path)
    assert r.version.endswith(data_fingerprint(small.train_path)[:8])  # type: ignore[attr-defined]
    # the default rule is the one with the higher validation AIQ
    aiq = dict(info.validation_aiq)
    assert set(aiq) == set(rule_names()) and r.default_rule == max(aiq, key=aiq.get)  # type: ignore[attr-defined]


def test_out_of_fold_probabilities_cover_every_training_prompt(small: Trained) -> None:
    q = small.router.quality  # type: ignore[attr-defined]
    assert q.oof_probs_.shape == (250, len(ROUTERBENCH_MODELS))
    assert np.all((q.oof_probs_ >= 0) & (q.oof_probs_ <= 1))
    # they carry signal: OOF P(success) is higher where the model did succeed
    logs = to_wide(read_logs(small.train_path))
    success = logs.quality >= 0.5
    assert q.oof_probs_[success].mean() > q.oof_probs_[~success].mean() + 0.05


def test_knob_tables_record_the_best_single_model(small: Trained) -> None:
    logs = to_wide(read_logs(small.train_path))
    single = np.nanmean(logs.quality, axis=0)
    for table in small.router.knob_tables.values():  # type: ignore[attr-defined]
        assert table.best_single_model == logs.models[int(np.argmax(single))]
        assert table.best_single_quality == pytest.approx(single.max())


def test_retraining_reuses_the_embedding_cache(small: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingEmbedder(small.embedder)
    monkeypatch.setattr(train_mod, "load_embedder", lambda spec, _dir: counting)
    logs = to_wide(read_logs(small.train_path))
    emb, embedder = train_mod.embed_logs(logs, "minilm", load_settings(home=small.home))
    assert embedder is counting and counting.calls == 0, "training logs were embedded again"
    assert emb.embeddings.shape == (250, counting.dim)
    np.testing.assert_allclose(
        emb.embeddings[:5], small.router.prepare(list(logs.prompts[:5])).embeddings, atol=1e-5  # type: ignore[attr-defined]
    )


def test_no_router_yet(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `llmroute train` first"):
        latest_router_dir(load_settings(home=tmp_path / "empty"))


def test_missing_or_bad_logs_raise(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    with pytest.raises(LogValidationError, match="missing.parquet"):
        train_router(tmp_path / "missing.parquet", settings, TrainConfig(embedder="minilm"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(LogValidationError, match="bad.parquet"):
        train_router(bad, settings, TrainConfig(embedder="minilm"))


@pytest.mark.slow  # trains two routers with the MiniLM transformer
def test_train_writes_the_answer_scorer_only_when_responses_were_logged(tmp_path: Path) -> None:
    from llmroute.data.importers import write_logs

    df = read_logs(Path(__file__).resolve().parents[2] / "data" / "routerbench" / "train.parquet")
    ids = df["prompt_id"].drop_duplicates().iloc[:80]
    part = df[df["prompt_id"].isin(ids)].reset_index(drop=True)
    settings = load_settings(home=tmp_path / "home")
    write_logs(part, tmp_path / "with.parquet")
    _, folder = train_router(tmp_path / "with.parquet", settings, TrainConfig(embedder="minilm"), out_dir=tmp_path / "a")
    assert (folder / "scorer" / "scorer_lightgbm.txt").exists()
    no_resp = part.assign(response=None)
    write_logs(no_resp, tmp_path / "without.parquet")
    _, folder = train_router(
        tmp_path / "without.parquet", settings, TrainConfig(embedder="minilm"), out_dir=tmp_path / "b"
    )
    assert not (folder / "scorer").exists()
