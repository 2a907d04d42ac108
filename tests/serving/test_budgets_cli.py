"""``llmroute budgets validate | status | simulate`` through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from llmroute.cli.budgets import register
from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.ledger import BudgetLedger, Charge
from llmroute.data.importers import read_logs, write_logs
from tests.serving.conftest import REPO, Trained


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    return app


def _serve_router(monkeypatch: pytest.MonkeyPatch, trained: Trained) -> list[object]:
    """``budgets simulate`` gets the session's router instead of loading one; returns the --model values asked."""
    asked: list[object] = []

    def load(settings: object, model: object) -> object:
        asked.append(model)
        return trained.router

    monkeypatch.setattr("llmroute.cli.budgets.load_router_or_exit", load)
    return asked


def test_validate_and_status(tmp_path: Path) -> None:
    app = _app()
    good = tmp_path / "b.yaml"
    good.write_text("budgets:\n  - {name: acme, tenant: acme, amount_usd: 2, window: daily, enforcement: block}\n")
    r = CliRunner().invoke(app, ["budgets", "validate", str(good)])
    assert r.exit_code == 0 and "acme: tenant acme, $2 per daily (UTC), block" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - {name: x, tenant: a, amount_usd: 1, timezone: Nowhere/City}\n")
    r = CliRunner().invoke(app, ["budgets", "validate", str(bad)])
    assert r.exit_code == 2 and "field 'timezone'" in r.output and str(bad) in r.output

    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with DecisionLogStore(url) as store:
        ledger = BudgetLedger(store.engine)
        ledger.put_budget("everything", {"name": "everything", "global": True, "amount_usd": 10}, "api")
        ledger.charge(Charge("d1", 1.5, datetime.now(UTC), "chat", tenant="acme"))
    r = CliRunner().invoke(app, ["budgets", "status", "--db", url, "--budgets", str(good), "--json"])
    assert r.exit_code == 0, r.output
    rows = {b["name"]: b for b in json.loads(r.output)["budgets"]}
    assert rows["acme"]["spent_usd"] == 1.5 and rows["acme"]["share"] == 0.75 and rows["acme"]["source"] == "file"
    assert rows["everything"]["spent_usd"] == 1.5 and rows["everything"]["source"] == "api"
    r = CliRunner().invoke(app, ["budgets", "status", "--log-url", url, "--budgets", str(good)])
    assert r.exit_code == 0 and "75.0%" in r.output and "tenant acme" in r.output


@pytest.mark.slow
def test_simulate_compares_the_policies(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _serve_router(monkeypatch, trained)
    logs = read_logs(REPO / "data" / "routerbench" / "test.parquet")
    ids = sorted(logs["prompt_id"].unique())[:120]
    write_logs(logs[logs["prompt_id"].isin(ids)].reset_index(drop=True), tmp_path / "test.parquet")
    out = tmp_path / "sim"
    r = CliRunner().invoke(_app(), [
        "budgets", "simulate", "--logs", str(tmp_path / "test.parquet"), "--budget", "50%",
        "--traffic", "requests=1500,days=7,seed=3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert asked == [None]  # no --model: the latest trained router
    report = json.loads((out / "report.json").read_text())
    pol = {p["policy"]: p for p in report["policies"]}
    assert report["budget_usd"] == pytest.approx(0.5 * pol["none"]["spend_usd"])
    assert pol["none"]["spend_vs_budget"] == pytest.approx(2.0)
    assert pol["block"]["blocked"] > 0 and pol["block"]["spend_vs_budget"] >= 1.0
    assert 0.85 <= pol["downgrade"]["spend_vs_budget"] <= 1.15 and pol["downgrade"]["blocked"] == 0
    assert pol["pace"]["blocked"] == 0 and 0.85 <= pol["pace"]["spend_vs_budget"] <= 1.1
    assert (out / "spend.png").stat().st_size > 10_000 and "| pace |" in (out / "report.md").read_text()
    assert report["feasible"] and report["floor_spend_usd"] < report["budget_usd"]
    hind = report["hindsight_trade_off"]
    assert 0.9 <= hind["spend_vs_budget"] <= 1.1 and hind["blocked"] == 0
    diff = report["pace_quality_difference"]["downgrade"]
    assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
    assert diff["mean"] == pytest.approx(pol["pace"]["mean_quality"] - pol["downgrade"]["mean_quality"])
    # a budget below the floor spend (every request on its cheapest model) is reported infeasible
    tiny = CliRunner().invoke(_app(), [
        "budgets", "simulate", "--logs", str(tmp_path / "test.parquet"), "--budget", "0.5%",
        "--traffic", "requests=600,days=7,seed=3", "--out", str(tmp_path / "tiny")])
    assert tiny.exit_code == 0, tiny.output
    small = json.loads((tmp_path / "tiny" / "report.json").read_text())
    assert not small["feasible"] and small["floor_spend_usd"] > small["budget_usd"]
    assert "INFEASIBLE" in tiny.output and f"${small['floor_spend_usd']:.4f}" in tiny.output
    paced = {p["policy"]: p for p in small["policies"]}["pace"]
    assert paced["blocked"] == 0 and paced["spend_usd"] >= small["floor_spend_usd"] - 1e-9
    bad = CliRunner().invoke(_app(), ["budgets", "simulate", "--logs", str(tmp_path / "test.parquet"),
                                             "--traffic", "requests=many"])
    assert bad.exit_code == 2 and "requests must be a number" in bad.output
