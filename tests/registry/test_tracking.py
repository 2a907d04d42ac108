"""Training runs are tracked: the embedded SQLite store, what a run records, how the model is stored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmroute.config import Settings
from llmroute.training.tracking import (
    data_fingerprint,
    log_training_run,
    mlflow_session,
    resolve_tracking_uri,
)
from tests.registry.helpers import Trained, fresh_copy


def test_uri_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(home=tmp_path / "h")
    assert resolve_tracking_uri(s) == f"sqlite:///{(tmp_path / 'h' / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team-mlflow:5000")
    assert resolve_tracking_uri(s) == "http://team-mlflow:5000"
    assert resolve_tracking_uri(Settings(home=tmp_path, tracking_uri="sqlite:///x.db")) == "sqlite:///x.db"
    monkeypatch.setenv("LLMROUTE_TRACKING_URI", "http://other:5000")
    assert resolve_tracking_uri(Settings()) == "http://other:5000"


def test_nothing_created_before_first_use(tmp_path: Path) -> None:
    resolve_tracking_uri(Settings(home=tmp_path / "h"))
    assert not (tmp_path / "h").exists()


def test_fingerprint_ignores_row_order_and_counts(train_logs: Path) -> None:
    from llmroute.data.importers import read_logs

    df = read_logs(train_logs)
    a = data_fingerprint(df)
    b = data_fingerprint(df.sample(frac=1.0, random_state=1))
    assert a["content_sha256"] == b["content_sha256"]
    assert a["rows"] == len(df) and a["prompts"] == 200
    assert sum(a["rows_per_model"].values()) == len(df)
    assert set(a["rows_per_source"]) == {"routerbench"}
    assert set(a["rows_per_task"]) <= {"arc-challenge", "winogrande", "mbpp"}
    changed = df.copy()
    changed.loc[changed.index[0], "quality"] = 1.0 - changed.loc[changed.index[0], "quality"]
    assert data_fingerprint(changed)["content_sha256"] != a["content_sha256"]


def test_train_run_in_default_store(good: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """First use creates <home>/mlflow.db and <home>/mlartifacts; the run holds everything the issue lists."""
    from mlflow import MlflowClient

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    home = tmp_path / "home"
    settings = Settings(home=home)
    router, folder = fresh_copy(good, tmp_path)
    trained_as = router.version

    tracked = log_training_run(router, folder, good.logs, None, settings)
    run_id, version = tracked.run_id, tracked.version

    assert version == "1"
    assert (home / "mlflow.db").is_file() and (home / "mlartifacts").is_dir()
    assert list(cwd.iterdir()) == [], "nothing may land in the working directory (./mlruns)"
    assert os.environ.get("MLFLOW_TRACKING_URI") is None, "the process-wide tracking URI is restored"
    # the registered router carries its registry version, in memory and on disk; the one passed in is unchanged
    assert tracked.router.version == "llmroute/1" and router.version == trained_as
    assert tracked.router.info.trained_as == trained_as and tracked.router.info.mlflow_run_id == run_id
    meta = json.loads((folder / "router.json").read_text())
    assert meta["version"] == "llmroute/1" and meta["info"]["trained_as"] == trained_as

    uri = resolve_tracking_uri(settings)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["embedder"] == "minilm" and p["embedder_fingerprint"] == good.router.embedder.fingerprint
    assert {"lightgbm.learning_rate", "lightgbm.num_leaves", "success_threshold", "default_target", "calibration"} <= set(p)
    assert 0.0 < m["val_aiq"] <= 1.0 and "val_log_loss" in m
    assert len(t["data.content_sha256"]) == 64 and t["data.prompts"] == "200"
    assert t["lib.lightgbm"] != "absent" and t["lib.mlflow"] != "absent"
    assert t["registered_version"] == "llmroute/1"
    with mlflow_session(uri):
        names = {a.path for a in client.list_artifacts(run_id)}
        fp = json.loads(Path(client.download_artifacts(run_id, "data/fingerprint.json", str(tmp_path))).read_text())
        libs = json.loads(Path(client.download_artifacts(run_id, "environment/library_versions.json", str(tmp_path))).read_text())
    assert {"data", "catalog", "environment"} <= names
    assert fp["content_sha256"] == t["data.content_sha256"] and fp["rows_per_source"] == {"routerbench": 2200}
    assert {"llmroute", "lightgbm", "sentence-transformers", "torch", "mlflow", "numpy", "scikit-learn"} <= set(libs)

    mv = client.get_model_version("llmroute", "1")
    assert client.get_registered_model("llmroute").aliases == {"challenger": 1} or mv.aliases == ["challenger"]
    assert mv.tags["data.content_sha256"] == t["data.content_sha256"]
    assert float(mv.tags["metric.val_aiq"]) == pytest.approx(m["val_aiq"], rel=1e-5)

    # stored as plain files: LightGBM native text, no pickle anywhere, the model logged as code
    stored = [f for f in (home / "mlartifacts").rglob("*") if f.is_file()]
    assert not [f for f in stored if f.suffix in (".pkl", ".pickle", ".joblib")]
    boosters = [f for f in stored if "lightgbm" in f.name]
    assert boosters and all(f.suffix == ".txt" and f.read_text()[:4] == "tree" for f in boosters)
    mlmodel = next(f for f in stored if f.name == "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel and "python_model.pkl" not in mlmodel
    assert "signature:" in mlmodel and any(f.name == "input_example.json" for f in stored)


def test_test_split_metrics_and_report_are_logged(good: Trained, tmp_path: Path) -> None:
    """With an evaluation report, test measures become metrics and the report files artifacts."""
    from mlflow import MlflowClient

    report_dir = tmp_path / "report"
    report_dir.mkdir()
    report = {
        "data": {"prompts_scored": 300},
        "routers": {"learned": {"aiq": 0.81, "cost_at_95_ratio": 2.5, "cost_at_parity_ratio": None}},
        "target_attainment": [
            {"target": "95% of the best model", "realised_share_of_best": 0.97, "met": True, "cost_per_1k": 1.2}
        ],
    }
    (report_dir / "report.json").write_text(json.dumps(report))
    (report_dir / "report.md").write_text("# report\n")
    (report_dir / "cost_quality.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    settings = Settings(home=tmp_path / "home")
    router, folder = fresh_copy(good, tmp_path)
    tracked = log_training_run(router, folder, good.logs, None, settings, report_dir)
    run_id, version = tracked.run_id, tracked.version
    uri = resolve_tracking_uri(settings)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    m = client.get_run(run_id).data.metrics
    assert m["test_aiq"] == 0.81 and m["test_cost_at_95_ratio"] == 2.5 and "test_cost_at_parity_ratio" not in m
    assert m["test_target95_met"] == 1.0 and m["test_prompts"] == 300
    with mlflow_session(uri):
        files = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert files == {"evaluation/report.json", "evaluation/report.md", "evaluation/cost_quality.png"}
    assert client.get_model_version("llmroute", version).tags["metric.test_aiq"] == "0.81"
