"""Round trip through the SQLite store: register, load by alias/version, pyfunc; clear errors."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from llmroute.artifacts.loading import load_router
from llmroute.artifacts.registry import RegistryError, list_models, parse_model_uri
from llmroute.config import Settings
from llmroute.router.router import Router
from llmroute.training.tracking import TrackingError, log_training_run, mlflow_session, resolve_tracking_uri
from tests.registry.helpers import Trained, assert_same_decisions, fresh_copy, held_out_prompts, store_settings


@dataclass(frozen=True)
class Registered:
    settings: Settings
    router: Router  # the in-memory router that was logged (version rewritten to llmroute/1)
    run_id: str


@pytest.fixture(scope="module")
def registered(good: Trained, reg_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    base = tmp_path_factory.mktemp("registered")
    settings = store_settings(reg_home, base / "store")
    router, folder = fresh_copy(good, base)
    tracked = log_training_run(router, folder, good.logs, None, settings)
    run_id, version = tracked.run_id, tracked.version
    assert version == "1"
    return Registered(settings, tracked.router, run_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_parse_model_uri() -> None:
    assert parse_model_uri("models:/llmroute@champion").alias == "champion"
    assert parse_model_uri("models:/llmroute/3").version == "3"
    with pytest.raises(RegistryError, match="not a registry model URI"):
        parse_model_uri("models:/llmroute")


def test_round_trip_by_alias_makes_identical_decisions(registered: Registered, test_logs: Path) -> None:
    loaded = load_router("models:/llmroute@challenger", registered.settings)
    assert loaded.version == "llmroute/1" and registered.router.version == "llmroute/1"
    assert loaded.embedder is not registered.router.embedder  # loaded afresh from the spec in router.json
    assert loaded.embedder.fingerprint == registered.router.embedder.fingerprint
    prompts = held_out_prompts(test_logs, 300)
    assert len(prompts) == 300
    assert_same_decisions(registered.router, loaded, prompts, routed=25)
    assert loaded.route(prompts[0]).router_version == "llmroute/1"
    by_version = load_router("models:/llmroute/1", registered.settings)
    assert by_version.version == "llmroute/1"


def test_pyfunc_predict(registered: Registered, test_logs: Path) -> None:
    import mlflow.pyfunc

    prompts = held_out_prompts(test_logs, 12)
    uri = resolve_tracking_uri(registered.settings)
    with mlflow_session(uri):
        model = mlflow.pyfunc.load_model("models:/llmroute@challenger")
        task = registered.router.quality.tasks_[0]  # a task the router knows (unknown hints are errors)
        frame = pd.DataFrame({"prompt": prompts, "task": [task] * 6 + [None] * 6})
        out = model.predict(frame)
        constrained = model.predict(
            pd.DataFrame({"prompt": prompts[:2], "allowed_models": ["claude-v2,gpt-4-1106-preview", "claude-v2"]})
        )
    assert list(out.columns) == [
        "model", "probability", "expected_cost_usd", "reason", "rule", "knob", "cleared", "router_version"
    ]
    assert len(out) == 12 and set(out["router_version"]) == {"llmroute/1"}
    r = registered.router
    for i, p in enumerate(prompts):
        d = r.route(p, task=task if i < 6 else None)
        assert out["model"][i] == d.model and out["reason"][i] == d.reason
        assert out["probability"][i] == next(c.probability for c in d.candidates if c.model == d.model)
    assert set(constrained["model"]) <= {"claude-v2", "gpt-4-1106-preview"}
    assert constrained["model"][1] == "claude-v2"


def test_unknown_alias_version_and_model(registered: Registered) -> None:
    with pytest.raises(RegistryError, match="alias 'champion' of registered model 'llmroute' does not exist"):
        load_router("models:/llmroute@champion", registered.settings)
    with pytest.raises(RegistryError, match="version 99 of registered model 'llmroute' does not exist"):
        load_router("models:/llmroute/99", registered.settings)
    with pytest.raises(RegistryError, match="registered model 'nope' does not exist"):
        load_router("models:/nope@champion", registered.settings)


def test_list_models(registered: Registered) -> None:
    rows = list_models(registered.settings)
    assert [r.version for r in rows] == ["1"]
    row = rows[0]
    assert row.aliases == ("challenger",) and row.router_version == "llmroute/1"
    assert row.val_aiq is not None and 0 < row.val_aiq <= 1
    assert row.data_sha256 and len(row.data_sha256) == 64 and row.data_prompts == 200
    assert row.run_id == registered.run_id


def test_unreachable_server_fails_fast_and_names_it(reg_home: Path, good: Trained, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    settings = Settings(home=reg_home, tracking_uri=uri)
    t0 = time.perf_counter()
    with pytest.raises(RegistryError, match="cannot reach the MLflow tracking server at " + uri) as info:
        load_router("models:/llmroute@champion", settings)
    assert "models:/llmroute@champion" in str(info.value)
    with pytest.raises(RegistryError, match="cannot reach"):
        list_models(settings)
    router, folder = fresh_copy(good, tmp_path)
    before = (folder / "router.json").read_text()
    with pytest.raises(TrackingError, match=uri):
        log_training_run(router, folder, good.logs, None, settings)
    assert time.perf_counter() - t0 < 30
    assert (folder / "router.json").read_text() == before, "a failed run leaves the local router untouched"


def test_damaged_artifact(good: Trained, reg_home: Path, tmp_path: Path) -> None:
    settings = store_settings(reg_home, tmp_path / "store")
    router, folder = fresh_copy(good, tmp_path)
    log_training_run(router, folder, good.logs, None, settings)
    stored = next((tmp_path / "store" / "mlartifacts").rglob("router.json")).parent
    booster = next(stored.glob("*lightgbm*.txt"))
    booster.write_text(booster.read_text()[:500])
    with pytest.raises(RegistryError, match=rf"models:/llmroute@challenger .*damaged: {booster.name}"):
        load_router("models:/llmroute@challenger", settings)
    (stored / "router.json").unlink()
    with pytest.raises(RegistryError, match="damaged: router.json is missing"):
        load_router("models:/llmroute/1", settings)


def test_embedder_mismatch_is_named(good: Trained, reg_home: Path, tmp_path: Path) -> None:
    from llmroute.router.embedder import EmbedderMismatchError

    settings = store_settings(reg_home, tmp_path / "store")
    router, folder = fresh_copy(good, tmp_path)
    log_training_run(router, folder, good.logs, None, settings)
    stored = next((tmp_path / "store" / "mlartifacts").rglob("router.json"))
    meta = json.loads(stored.read_text())
    meta["embedder"]["fingerprint"] = "0" * 16
    stored.write_text(json.dumps(meta))
    manifest = stored.parent / "manifest.json"
    m = json.loads(manifest.read_text())
    import hashlib

    m["sha256"]["router.json"] = hashlib.sha256(stored.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(m))
    with pytest.raises(EmbedderMismatchError, match="models:/llmroute/1.*trained with embedder 'minilm'"):
        load_router("models:/llmroute/1", settings)


def test_a_passed_reload_check_is_tagged_and_reused_by_other_replicas(good: Trained, reg_home: Path,
                                                                        tmp_path: Path) -> None:
    """A replica that passed a registry version's isolated check tags the version with the check's key;
    another replica (its own state folder) then skips the check, and a tag of other files does not count."""
    import asyncio

    from llmroute.artifacts.registry import CHECKED_TAG, set_version_tag, version_tag
    from llmroute.serving.candidate import check_candidate, prepare_candidate

    settings = store_settings(reg_home, tmp_path / "store")
    router, folder = fresh_copy(good, tmp_path)
    log_training_run(router, folder, good.logs, None, settings)

    def check(home: Path) -> str:
        core = settings.model_copy(update={"home": home})
        candidate = prepare_candidate("models:/llmroute@challenger", core, "llmroute/1")
        try:
            assert candidate.registry_version == "llmroute/1"
            return asyncio.run(check_candidate(candidate, core, False, 120.0)).how
        finally:
            candidate.discard()

    assert version_tag("llmroute/1", CHECKED_TAG, settings) is None
    assert check(tmp_path / "replica1") == "ran"
    key = version_tag("llmroute/1", CHECKED_TAG, settings)
    assert key and len(key) == 64
    assert check(tmp_path / "replica2") == "registry"
    set_version_tag("llmroute/1", CHECKED_TAG, "0" * 64, settings)  # a pass of other files
    assert check(tmp_path / "replica3") == "ran"
