"""The registry lifecycle: first promotion, the gate refusing a worse challenger, --force with a reason,
rollback, listing; through the Python API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmroute.cli import app
from llmroute.training.registry import RegistryError, promote, rollback
from llmroute.training.tracking import log_training_run, resolve_tracking_uri
from tests.registry.helpers import Trained, fresh_copy, store_settings


def _aliases(settings) -> dict[str, str]:
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(settings)
    rm = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(settings.registered_model)
    return {a: str(v) for a, v in rm.aliases.items()}


def _tags(settings, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(settings)
    return dict(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("llmroute", version).tags)


def test_gate_force_and_rollback(
    good: Trained, bad: Trained, reg_home: Path, test_logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = store_settings(reg_home, tmp_path / "store")
    uri = resolve_tracking_uri(settings)
    printed: list[str] = []

    with pytest.raises(RegistryError, match="registered model 'llmroute' does not exist"):
        promote(settings, test_logs, echo=printed.append)

    # 1. the first challenger becomes champion
    router, folder = fresh_copy(good, tmp_path / "good")
    log_training_run(router, folder, good.logs, None, settings)
    first = promote(settings, test_logs, echo=printed.append)
    assert first.promoted and not first.forced and first.champion_version is None
    assert _aliases(settings) == {"champion": "1"}
    with pytest.raises(RegistryError, match="alias 'challenger' of registered model 'llmroute' does not exist"):
        promote(settings, test_logs, echo=printed.append)

    # 2. a worse challenger (trained on inverted outcomes) is refused, on the same held-out logs
    router_b, folder_b = fresh_copy(bad, tmp_path / "bad")
    log_training_run(router_b, folder_b, bad.logs, None, settings)
    printed.clear()
    refused = promote(settings, test_logs, echo=printed.append)
    cmp = refused.comparison
    assert not refused.promoted and cmp.champion is not None
    assert cmp.challenger.aiq < cmp.champion.aiq
    assert "refused" in refused.message and "AIQ is not higher" in refused.message
    table = printed[0]
    assert "champion v1" in table and "challenger v2" in table and "AIQ" in table and "target met" in table
    assert f"{cmp.champion.aiq:.4f}" in table and f"{cmp.challenger.aiq:.4f}" in table
    assert _aliases(settings) == {"champion": "1", "challenger": "2"}
    assert _tags(settings, "2")["promotion.decision"] == "refused"
    with pytest.raises(ValueError, match="needs a reason"):
        promote(settings, test_logs, force=True, echo=printed.append)

    # 3. the CLI: refused again (exit 1), then forced with a reason that is recorded
    runner = CliRunner()
    monkeypatch.setenv("LLMROUTE_HOME", str(reg_home))
    monkeypatch.setenv("LLMROUTE_TRACKING_URI", uri)
    res = runner.invoke(app, ["promote", "--logs", str(test_logs)])
    assert res.exit_code == 1, res.output
    assert "challenger v2" in res.output and "refused" in res.output
    reason = "hotfix: champion misroutes code prompts"
    res = runner.invoke(app, ["promote", "--logs", str(test_logs), "--force", "--reason", reason])
    assert res.exit_code == 0, res.output
    assert _aliases(settings) == {"champion": "2"}
    tags = _tags(settings, "2")
    assert tags["promotion.reason"] == reason and tags["promotion.forced"] == "true"
    assert tags["previous_champion"] == "1" and tags["promotion.decision"] == "promoted"

    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "version" in lines[0] and "data sha256" in lines[0]
    v2 = next(ln for ln in lines if ln.split()[0] == "2")
    v1 = next(ln for ln in lines if ln.split()[0] == "1")
    assert "champion" in v2 and "champion" not in v1
    assert _tags(settings, "1")["data.content_sha256"][:16] in v1

    # 4. rollback moves champion back to the previous champion; there is nothing before the first
    res = runner.invoke(app, ["rollback"])
    assert res.exit_code == 0, res.output
    assert "from version 2 to 1" in res.output
    assert _aliases(settings) == {"champion": "1"}
    assert "rolled_back" in _tags(settings, "2")
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(settings)

    # 5. route and evaluate load the champion by alias
    res = runner.invoke(app, ["route", "Write a Python function to reverse a list.", "--model", "models:/llmroute@champion"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["router_version"] == "llmroute/1"
    res = runner.invoke(app, ["route", "hello", "--model", "models:/llmroute@nope"])
    assert res.exit_code == 2 and "alias 'nope' of registered model 'llmroute' does not exist" in res.output


def test_evaluate_by_alias(good: Trained, reg_home: Path, test_logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = store_settings(reg_home, tmp_path / "store")
    router, folder = fresh_copy(good, tmp_path)
    log_training_run(router, folder, good.logs, None, settings)
    monkeypatch.setenv("LLMROUTE_TRACKING_URI", resolve_tracking_uri(settings))
    out = tmp_path / "report"
    res = CliRunner().invoke(
        app,
        ["evaluate", "--logs", str(test_logs), "--report-dir", str(out), "--model", "models:/llmroute@challenger",
         "--bootstrap", "20", "--home", str(reg_home)],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((out / "report.json").read_text())["router"]["version"] == "llmroute/1"
