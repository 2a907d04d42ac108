"""The dashboard through the app: access (keys, login cookie), headers, the numbers of served traffic, redaction."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmroute.budgets.windows import window_at
from llmroute.cli import app as cli_app
from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.ledger import BudgetLedger, Charge
from llmroute.router.router import Router
from llmroute.serving import dashboard_session
from llmroute.serving.app import create_app
from llmroute.serving.counterfactuals import best_single_model
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained

CLIENT, ADMIN, BOARD = "client-key-1", "admin-key-1", "board-key-1"
PROMPTS = [
    "Which planet is known as the red planet? tulip-3391",
    "Write a python function that returns the n-th Fibonacci number. cobalt-118",
    "What is 17 * 23? Answer with the number only. lantern-75",
]


def _client(router: Router, tmp_path: Path, **kw: Any) -> TestClient:
    settings = ServeSettings(**{
        "model": "/nonexistent/router", "api_keys": [CLIENT], "admin_api_keys": [ADMIN],
        "dashboard_api_keys": [BOARD], "decision_log_url": f"sqlite:///{tmp_path / 'log.sqlite'}", **kw,
    })
    return TestClient(create_app(settings, router), raise_server_exceptions=False)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _route_traffic(c: TestClient) -> list[dict[str, Any]]:
    out = []
    for i, prompt in enumerate(PROMPTS * 2):
        tenant = "acme" if i < 4 else "beta"
        r = c.post("/route", json={"prompt": prompt, "tenant": tenant, "target": "95%"}, headers=_auth(CLIENT))
        assert r.status_code == 200, r.text
        out.append({**r.json(), "tenant": tenant})
    fb = c.post("/feedback", json={"decision_id": out[0]["decision_id"], "quality": 0.8}, headers=_auth(CLIENT))
    assert fb.status_code == 202, fb.text
    return out


def _wait_written(url: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with DecisionLogStore(url) as store:
            if store.counts()["decisions"] >= n and store.counts()["feedback"] >= 1:
                return
        time.sleep(0.1)
    raise AssertionError("the decision log writer did not write the traffic within 10 s")


def test_overview_shows_the_served_traffic(router: Router, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with _client(router, tmp_path) as c:
        routed = _route_traffic(c)
        _wait_written(url, len(routed))
        r = c.get("/dashboard/api/overview", params={"window": "day"}, headers=_auth(BOARD))
        assert r.status_code == 200, r.text
        d = r.json()
        acme = c.get("/dashboard/api/overview", params={"window": "hour", "tenant": "acme"}, headers=_auth(ADMIN)).json()
    best = best_single_model(router)
    chosen = [next(x["expected_cost_usd"] for x in d_["candidates"] if x["model"] == d_["model"]) for d_ in routed]
    best_costs = [next(x["expected_cost_usd"] for x in d_["candidates"] if x["model"] == best) for d_ in routed]
    t = d["totals"]
    assert t["decisions"] == len(routed)
    assert t["expected_cost_usd"] == pytest.approx(sum(chosen))
    assert t["best_n"] == len(routed)
    assert t["best_cost_usd"] == pytest.approx(sum(best_costs))
    assert t["best_saving_usd"] == pytest.approx(sum(best_costs) - sum(chosen))
    assert t["seed_n"] == len(routed)  # the bundled seed rules map onto RouterBench's models
    assert t["feedback"] == 1 and t["mean_quality"] == pytest.approx(0.8) and t["target_attainment"] == 1.0
    assert d["latency"]["route"]["n"] == len(routed) and d["latency"]["route"]["p50_ms"] > 0
    assert {r_["tenant"]: r_["decisions"] for r_ in d["by_tenant"]} == {"acme": 4, "beta": 2}
    assert d["tenants"] == ["acme", "beta"]
    by_model: dict[str, int] = {}
    for x in routed:
        by_model[x["model"]] = by_model.get(x["model"], 0) + 1
    assert {m["model"]: m["decisions"] for m in d["by_model"]} == by_model
    assert sum(sum(s["decisions"]) for s in d["series"].values()) == len(routed)
    assert d["served"]["router_version"] == router.version
    assert {x["prompt"] for x in d["recent"]} == set(PROMPTS)
    assert acme["totals"]["decisions"] == 4 and {x["tenant"] for x in acme["recent"]} == {"acme"}


BUDGETS = [  # forecast off: whether a forecast alert is due would depend on the time of day the test runs
    {"name": "acme-daily", "tenant": "acme", "amount_usd": 1, "window": "daily", "enforcement": "alert", "forecast": False},
    {"name": "beta-weekly", "tenant": "beta", "amount_usd": 2, "window": "weekly", "timezone": "Europe/Berlin",
     "enforcement": "block", "forecast": False},
    {"name": "everything", "global": True, "amount_usd": 10, "window": "monthly", "rolling": True, "forecast": False},
]


def _seed_budget_spend(url: str) -> None:
    """acme spends $0.60 (60% of its day: the 50% alert fired), beta $0.25, everything $0.85 (no alert)."""
    now = datetime.now(UTC)
    with DecisionLogStore(url) as store:
        ledger = BudgetLedger(store.engine)
        for i, (tenant, usd) in enumerate([("acme", 0.25), ("acme", 0.35), ("beta", 0.25)]):
            assert ledger.charge(Charge(f"seed-{i}", usd, now, "chat", tenant=tenant))
        assert ledger.claim_alert("acme-daily", window_at("daily", False, ZoneInfo("UTC"), now).start, "threshold:0.5", now)


def test_budgets_panel_shows_the_budgets_in_force(router: Router, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with _client(router, tmp_path) as c:  # no budget file, none stored
        empty = c.get("/dashboard/api/overview", headers=_auth(BOARD)).json()["budgets"]
    assert empty["rows"] == [] and empty["note"].startswith("no budgets configured")

    _seed_budget_spend(url)
    budget_file = tmp_path / "budgets.yaml"
    budget_file.write_text(yaml.safe_dump({"budgets": BUDGETS}))
    with _client(router, tmp_path, budgets=str(budget_file)) as c:
        every = c.get("/dashboard/api/overview", params={"window": "hour"}, headers=_auth(BOARD)).json()["budgets"]
        beta = c.get("/dashboard/api/overview", params={"tenant": "beta"}, headers=_auth(BOARD)).json()["budgets"]
        nobody = c.get("/dashboard/api/overview", params={"tenant": "zeta"}, headers=_auth(BOARD)).json()["budgets"]
    rows = {r["name"]: r for r in every["rows"]}
    assert list(rows) == ["acme-daily", "beta-weekly", "everything"] and every["note"] is None
    acme, weekly, total = rows["acme-daily"], rows["beta-weekly"], rows["everything"]
    assert (acme["scope"], acme["subject"], acme["window"], acme["enforcement"]) == ("tenant", "acme", "daily", "alert")
    assert acme["spent_usd"] == pytest.approx(0.60) and acme["amount_usd"] == 1 and acme["share"] == pytest.approx(0.60)
    assert acme["alerts_fired"] == ["threshold:0.5"] and acme["calls"] == 2
    assert acme["resets_at"] == acme["window_end"] and acme["resets_at"].endswith("+00:00")
    assert weekly["spent_usd"] == pytest.approx(0.25) and weekly["timezone"] == "Europe/Berlin"
    assert weekly["enforcement"] == "block" and weekly["alerts_fired"] == []
    assert total["scope"] == "global" and total["window"] == "rolling monthly" and total["resets_at"] is None
    assert total["spent_usd"] == pytest.approx(0.85) and total["share"] == pytest.approx(0.085)
    assert total["forecast_usd"] is None  # a rolling window has no end to forecast
    # the tenant filter leaves out other tenants' budgets, never the global one
    assert [r["name"] for r in beta["rows"]] == ["beta-weekly", "everything"]
    assert [r["name"] for r in nobody["rows"]] == ["everything"]

    # the same rows as `llmroute budgets status` (one function computes both)
    out = CliRunner().invoke(cli_app, ["budgets", "status", "--log-url", url, "--json"])
    assert out.exit_code == 0, out.output
    stable = ("name", "scope", "subject", "amount_usd", "window", "timezone", "enforcement", "source", "spent_usd",
              "calls", "share", "window_start", "window_end", "resets_at", "alerts_fired")
    cli_rows = json.loads(out.output)["budgets"]
    assert [{k: r[k] for k in stable} for r in cli_rows] == [{k: r[k] for k in stable} for r in every["rows"]]


def test_prompts_are_never_sent_when_redaction_is_on(router: Router, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    with _client(router, tmp_path, redact_prompts=True) as c:
        routed = _route_traffic(c)
        _wait_written(url, len(routed))
        r = c.get("/dashboard/api/overview", params={"window": "day"}, headers=_auth(ADMIN))
    assert r.status_code == 200 and r.json()["prompts_shown"] is False
    assert len(r.json()["recent"]) == len(routed)
    for prompt in PROMPTS:
        assert prompt.split("?")[0] not in r.text


def test_access_rules(router: Router, tmp_path: Path) -> None:
    with _client(router, tmp_path) as c:
        page = c.get("/dashboard")
        assert page.status_code == 200 and 'action="/dashboard/login"' in page.text and "<svg" not in page.text
        assert c.get("/dashboard/api/overview").status_code == 401
        assert c.get("/dashboard/api/overview", headers=_auth(CLIENT)).status_code == 403
        refused = c.post("/dashboard/login", data={"key": CLIENT}, follow_redirects=False)
        assert refused.status_code == 401 and "a client key cannot open the dashboard" in refused.text
        assert c.post("/dashboard/login", data={"key": "wrong"}, follow_redirects=False).status_code == 401
        assert "set-cookie" not in refused.headers

        ok = c.post("/dashboard/login", data={"key": BOARD}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        raw = ok.headers["set-cookie"]
        assert "HttpOnly" in raw and "SameSite=strict" in raw and "Path=/dashboard" in raw
        token = SimpleCookie(raw)[dashboard_session.COOKIE].value
        assert BOARD not in token
        assert c.get("/dashboard").text.count('id="chart-') >= 5  # the cookie opens the page
        assert c.get("/dashboard/api/overview").status_code == 200
        assert c.get("/dashboard/api/registry").json()["note"] == "served from a folder, not from the registry"
        assert "no A/B experiment" in c.get("/dashboard/api/ab").json()["note"]
        assert c.get("/dashboard/api/overview", params={"window": "week"}).status_code == 422

        c.post("/dashboard/logout")
        assert c.get("/dashboard/api/overview").status_code == 401
        c.cookies.set(dashboard_session.COOKIE, token[:-1] + ("0" if token[-1] != "0" else "1"), path="/dashboard")
        assert c.get("/dashboard/api/overview").status_code == 401  # a tampered signature


def test_session_tokens_expire_and_end_with_their_key() -> None:
    token = dashboard_session.issue("k1", 60, now=1000.0)
    assert dashboard_session.verify(token, ["other", "k1"], now=1059.0)
    assert not dashboard_session.verify(token, ["k1"], now=1061.0)
    assert not dashboard_session.verify(token, ["other"], now=1001.0)
    assert not dashboard_session.verify("1.2", ["k1"]) and not dashboard_session.verify(None, ["k1"])


def test_no_configured_dashboard_key_closes_the_dashboard(router: Router, tmp_path: Path) -> None:
    with _client(router, tmp_path, admin_api_keys=[], dashboard_api_keys=[]) as c:
        r = c.get("/dashboard/api/overview", headers=_auth(CLIENT))
        assert r.status_code == 403 and "no admin or dashboard key is configured" in r.text


def test_page_has_a_strict_csp_and_no_inline_code(router: Router, tmp_path: Path) -> None:
    with _client(router, tmp_path) as c:
        page = c.get("/dashboard", headers=_auth(ADMIN))
        js = c.get("/dashboard/static/dashboard.js")
        assert c.get("/dashboard/static/../settings.py").status_code == 404
        assert c.get("/dashboard/static/login.html").status_code == 404
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    folder = resources.files("llmroute.serving").joinpath("dashboard")
    for name in ("index.html", "login.html"):
        text = folder.joinpath(name).read_text()
        assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", text)), name
        assert not re.search(r"\son[a-z]+=|style=", text), name
    assert "https://" not in folder.joinpath("dashboard.js").read_text()  # nothing from elsewhere


def test_ab_panel_reports_the_served_experiment(trained: Trained, router: Router, tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "board", "unit": "user",
        "arms": [{"name": "learned", "control": True, "weight": 1, "router": str(trained.folder)},
                 {"name": "gpt4", "weight": 1, "always": "gpt-4-1106-preview"}],
        "analysis": {"min_requests_per_arm": 50, "n_boot": 100},
    }))
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    settings = ServeSettings(model=str(trained.folder), admin_api_keys=[ADMIN], decision_log_url=url,
                             experiment=str(path))
    with TestClient(create_app(settings, router, core=trained.core), raise_server_exceptions=False) as c:
        arms = []
        for i in range(8):
            r = c.post("/route", json={"prompt": PROMPTS[i % 3], "user": f"user-{i}"}, headers=_auth(ADMIN))
            assert r.status_code == 200, r.text
            arms.append(r.json()["arm"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with DecisionLogStore(url) as store:
                if store.counts()["decisions"] >= 8:
                    break
            time.sleep(0.1)
        d = c.get("/dashboard/api/ab", params={"window": "hour"}, headers=_auth(ADMIN)).json()
    assert d["experiment"] == "board"
    report = d["report"]
    assert {k: v["requests"] for k, v in report["arms"].items()} == {a: arms.count(a) for a in ("learned", "gpt4")}
    assert report["enough_data"] is False
    assert set(report["comparisons"]) == {"gpt4"}


def _registry_client(router: Router, core: Any) -> TestClient:
    settings = ServeSettings(model="models:/llmroute@champion", admin_api_keys=[ADMIN], decision_log_url="off")
    return TestClient(create_app(settings, router, core=core), raise_server_exceptions=False)


@pytest.mark.slow
def test_registry_panel_lists_versions_and_survives_an_unavailable_registry(
    router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from llmroute.config import Settings
    from llmroute.serving import dashboard_panels
    from llmroute.serving.routes import dashboard as dashboard_routes

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    core = Settings(home=tmp_path / "home", tracking_uri=uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(core.registered_model)
    for v, tags in ((1, {"metric.val_aiq": "0.8447", "promotion.at": "2026-11-30T10:00:00Z", "promotion.decision": "promoted"}),
                    (2, {"metric.val_aiq": "0.8512"})):
        client.create_model_version(core.registered_model, source=str(tmp_path / f"v{v}"), tags=tags)
    client.set_registered_model_alias(core.registered_model, "champion", "1")
    client.set_registered_model_alias(core.registered_model, "challenger", "2")
    monkeypatch.setattr(dashboard_routes, "REGISTRY_TIMEOUT_S", 600.0)  # MLflow is slow on a busy machine
    with _registry_client(router, core) as c:
        d = c.get("/dashboard/api/registry", headers=_auth(ADMIN)).json()
    assert d["router_version"] == router.version and d["note"] is None
    assert [(v["version"], v["aliases"], v["val_aiq"], v["promoted_at"]) for v in d["versions"]] == [
        ("2", ["challenger"], 0.8512, None), ("1", ["champion"], 0.8447, "2026-11-30T10:00:00Z")]

    down = Settings(home=tmp_path / "home", tracking_uri=f"sqlite:///{tmp_path / 'missing' / 'x' / 'mlflow.db'}")
    with _registry_client(router, down) as c:
        d = c.get("/dashboard/api/registry", headers=_auth(ADMIN)).json()
    assert d["versions"] == [] and d["note"].startswith("the registry is unavailable")

    def slow(services: object) -> list:
        time.sleep(1.0)
        return []

    monkeypatch.setattr(dashboard_panels, "_registry_versions", slow)
    monkeypatch.setattr(dashboard_panels, "_registry_cache", {})
    monkeypatch.setattr(dashboard_routes, "REGISTRY_TIMEOUT_S", 0.2)
    with _registry_client(router, core) as c:
        d = c.get("/dashboard/api/registry", headers=_auth(ADMIN)).json()
    assert d["note"] == "the registry did not answer within 0.2 s" and d["router_version"] == router.version
