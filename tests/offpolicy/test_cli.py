"""`llmroute retrain`, `llmroute offpolicy` and `llmroute promote --gate offpolicy` at the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmroute.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["retrain", "offpolicy", "promote"])
def test_help(command: str) -> None:
    r = runner.invoke(app, [command, "--help"])
    assert r.exit_code == 0, r.output
    assert "--from-production" in r.output


@pytest.mark.parametrize("command", ["retrain", "offpolicy"])
def test_a_bad_dsn_is_an_error_naming_it(command: str, tmp_path: Path) -> None:
    r = runner.invoke(app, [command, "--from-production", "nonsense", "--home", str(tmp_path)])
    assert r.exit_code == 2
    assert "error: --from-production 'nonsense' is not a database URL" in r.output
    missing = tmp_path / "none.sqlite"
    r = runner.invoke(app, [command, "--from-production", f"sqlite:///{missing}", "--home", str(tmp_path)])
    assert r.exit_code == 2
    assert f"no decision log at sqlite:///{missing}" in r.output
    assert not missing.exists()  # reading never creates a log


def test_promote_offpolicy_needs_the_log() -> None:
    r = runner.invoke(app, ["promote", "--gate", "offpolicy"])
    assert r.exit_code == 2 and "--gate offpolicy needs --from-production" in r.output
    r = runner.invoke(app, ["promote", "--gate", "nope"])
    assert r.exit_code == 2 and "--gate must be one of benchmark, offpolicy" in r.output


def test_a_bad_until_is_named(tmp_path: Path) -> None:
    r = runner.invoke(app, ["retrain", "--from-production", "sqlite:///x.sqlite", "--until", "yesterday"])
    assert r.exit_code == 2 and "--until" in r.output


@pytest.mark.parametrize("flag, expected", [([], True), (["--no-scorer"], False)])
def test_retrain_trains_the_answer_scorer_like_train(
    flag: list[str], expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 6: `llmroute retrain` registered the new router without the cascade's answer scorer."""
    from llmroute.training import retrain

    seen = {}

    def fake(dsn, settings, config, *args, **kwargs):
        seen["config"] = config

    monkeypatch.setattr(retrain, "retrain_from_production", fake)
    r = runner.invoke(app, ["retrain", "--from-production", "sqlite:///x.sqlite", "--home", str(tmp_path), *flag])
    assert r.exit_code == 0, r.output
    assert seen["config"].with_scorer is expected
