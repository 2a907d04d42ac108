"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
against a live service whose decision log is seeded with known traffic. Signs in, checks that every chart
drew the seeded numbers, switches window and tenant, and saves screenshots under the test's tmp dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from llmroute.budgets.windows import window_at
from llmroute.data.decision_log import (
    DecisionLogStore,
    FeedbackRecord,
    LoggedCandidate,
    OutcomeRecord,
)
from llmroute.data.decision_log.ledger import BudgetLedger, Charge
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings
from tests.decision_log.helpers import decision
from tests.serving.servers import LiveServer

pytestmark = pytest.mark.slow

KEY = "board-key-browser"
COSTS = {"small": 0.001, "mid": 0.004, "large": 0.02}
CANDS = tuple(LoggedCandidate(m, p, c, True) for (m, c), p in zip(COSTS.items(), (0.6, 0.75, 0.9)))
# (minutes ago, tenant, model, outcome cost or None, feedback or None, route latency ms, call latency ms)
TRAFFIC = [
    (5, "acme", "small", 0.002, 1.0, 3.0, 400.0),
    (10, "acme", "small", 0.003, 0.0, 4.0, 500.0),
    (15, "acme", "large", 0.030, 1.0, 5.0, 2000.0),
    (20, "beta", "mid", 0.010, None, 6.0, 800.0),
    (25, "beta", "small", None, None, 7.0, None),
    (180, "acme", "mid", 0.020, 0.5, 8.0, 900.0),  # in the day window, not the hour
    (200, "beta", "large", 0.050, None, 9.0, 1500.0),
]


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def _seed(url: str, now: datetime) -> None:
    recs: list = []
    for i, (ago, tenant, model, cost, quality, route_ms, call_ms) in enumerate(TRAFFIC):
        at = now - timedelta(minutes=ago)
        recs.append(decision(i, at=at, tenant=tenant, chosen_model=model, candidates=CANDS, reason_kind="router",
                             best_cost_usd=COSTS["large"], seed_cost_usd=COSTS["mid"], latency_ms=route_ms,
                             source="route", prompt=f"seeded prompt {i} about {tenant}"))
        if cost is not None:
            recs.append(OutcomeRecord(f"d{i:06d}", model, True, created_at=at, cost_usd=cost, latency_ms=call_ms,
                                      attempts=({"model": model, "ok": True},)))
        if quality is not None:
            recs.append(FeedbackRecord(f"d{i:06d}", quality, created_at=at + timedelta(minutes=1)))
    with DecisionLogStore(url) as store:
        store.write_many(recs)
        ledger = BudgetLedger(store.engine)
        for i, (tenant, usd) in enumerate(SPEND):
            assert ledger.charge(Charge(f"seed-{i}", usd, now, "chat", tenant=tenant))
        day = window_at("daily", False, ZoneInfo("UTC"), now)
        for key in ("threshold:0.5", "threshold:0.8", "threshold:1"):  # beta is over: every threshold fired
            assert ledger.claim_alert("beta-daily", day.start, key, now)


# Budgets in force (forecast alerts off: whether one is due would depend on the time of day) and their spend.
BUDGETS = [
    {"name": "acme-daily", "tenant": "acme", "amount_usd": 4, "window": "daily", "enforcement": "alert", "forecast": False},
    {"name": "beta-daily", "tenant": "beta", "amount_usd": 0.5, "window": "daily", "enforcement": "block", "forecast": False},
    {"name": "everything", "global": True, "amount_usd": 20, "window": "weekly", "rolling": True, "enforcement": "alert",
     "forecast": False},
]
SPEND = [("acme", 0.40), ("acme", 0.60), ("beta", 0.55)]
# name -> (spent, limit, alerts fired); acme is at 25%, below its first (50%) threshold
EXPECTED_BUDGETS = {"acme-daily": (1.0, 4.0, ""), "beta-daily": (0.55, 0.5, "threshold:0.5,threshold:0.8,threshold:1"),
                    "everything": (1.55, 20.0, "")}


def _check_budgets(d: object, names: list[str]) -> None:
    rows = d.find_elements("css selector", "#budgets-table tr[data-key]")  # type: ignore[attr-defined]
    assert [r.get_attribute("data-key") for r in rows] == names
    assert d.find_element("id", "budgets").get_attribute("data-count") == str(len(names))  # type: ignore[attr-defined]
    for r in rows:
        spent, limit, alerts = EXPECTED_BUDGETS[r.get_attribute("data-key")]
        assert float(r.get_attribute("data-spent")) == pytest.approx(spent)
        assert float(r.get_attribute("data-limit")) == pytest.approx(limit)
        assert float(r.get_attribute("data-share")) == pytest.approx(spent / limit)
        assert r.get_attribute("data-alerts") == alerts
        assert ("50.0%, 80.0%, 100.0%" in r.text) == bool(alerts)  # the alerts cell names each fired threshold
        bar = r.find_element("css selector", "svg.budget-bar rect.fill")
        assert float(bar.get_attribute("width")) == pytest.approx(100 * min(1.0, spent / limit))
        assert "over" in bar.get_attribute("class") if spent >= limit else "ok" in bar.get_attribute("class")
        rolling = r.get_attribute("data-key") == "everything"
        assert (r.get_attribute("data-resets") == "") == rolling and ("rolling" in r.text) == rolling
        forecast = r.get_attribute("data-forecast")
        assert forecast == "" if rolling else (forecast == "" or float(forecast) >= spent)


def _expected(max_ago: int, tenant: str | None = None) -> dict[str, object]:
    rows = [t for t in TRAFFIC if t[0] <= max_ago and (tenant is None or t[1] == tenant)]
    spend_by_tenant: dict[str, float] = {}
    spend_by_model: dict[str, float] = {}
    for _, who, model, cost, *_ in rows:
        spend_by_tenant[who] = spend_by_tenant.get(who, 0.0) + (cost or 0.0)
        spend_by_model[model] = spend_by_model.get(model, 0.0) + (cost or 0.0)
    feedback = [t[4] for t in rows if t[4] is not None]
    return {
        "decisions": len(rows),
        "spend": sum(t[3] or 0.0 for t in rows),
        "by_tenant": spend_by_tenant,
        "by_model": spend_by_model,
        "saving_best": sum(COSTS["large"] - COSTS[t[2]] for t in rows),
        "feedback": len(feedback),
        "mean_quality": sum(feedback) / len(feedback) if feedback else None,
    }


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    paths = _browser_paths()
    if paths is None:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2200", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    d = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    try:
        yield d
    finally:
        d.quit()


def _wait_ready(d: object, view: str) -> None:
    """Wait until the dashboard has rendered `view`.

    One script reads both attributes in the page as it is at that moment: a form post navigates, and an element
    found on the page being left goes stale before its attribute is read (the flake CI hit after the login).
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    script = ("const b = document.body;"
              "return b ? [b.getAttribute('data-ready'), b.getAttribute('data-view')] : [null, null];")
    WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda drv: drv.execute_script(script) == ["true", view]  # type: ignore[attr-defined]
    )


def _wait_text(d: object, element_id: str, needle: str) -> None:
    """Wait until the element `element_id` of the page now shown contains `needle` (after a form post's navigation)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda drv: needle in drv.find_element("id", element_id).text  # type: ignore[attr-defined]
    )


def _value(d: object, element_id: str, attr: str = "data-value") -> float:
    return float(d.find_element("id", element_id).get_attribute(attr))  # type: ignore[attr-defined]


def _bars(d: object, chart: str) -> dict[str, float]:
    rects = d.find_elements("css selector", f"#{chart} rect[data-key]")  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for r in rects:
        out[r.get_attribute("data-key")] = out.get(r.get_attribute("data-key"), 0.0) + float(r.get_attribute("data-value"))
    return out


def _check(d: object, expected: dict[str, object]) -> None:
    assert _value(d, "kpi-decisions") == expected["decisions"]
    assert _value(d, "chart-mix", "data-total") == expected["decisions"]
    assert _value(d, "kpi-spend") == pytest.approx(expected["spend"])
    assert _value(d, "chart-spend", "data-total") == pytest.approx(expected["spend"])
    assert _bars(d, "chart-tenants") == pytest.approx(expected["by_tenant"])
    assert _bars(d, "chart-models") == pytest.approx(expected["by_model"])
    assert _value(d, "kpi-save-best") == pytest.approx(expected["saving_best"])
    assert _value(d, "q-feedback") == expected["feedback"]
    if expected["mean_quality"] is not None:
        assert _value(d, "q-mean") == pytest.approx(expected["mean_quality"])
    reasons = _bars(d, "chart-reasons")
    assert reasons["router's pick"] == expected["decisions"] and reasons["cascade escalation"] == 0
    latency = _bars(d, "chart-latency")
    assert set(latency) == {"/route p50", "/route p99", "provider call p50", "provider call p99"}
    assert all(v > 0 for v in latency.values())


def test_dashboard_in_headless_chromium(driver: object, router: Router, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    _seed(url, datetime.now(UTC))
    budget_file = tmp_path / "budgets.yaml"
    budget_file.write_text(yaml.safe_dump({"budgets": BUDGETS}))
    settings = ServeSettings(model="/nonexistent/router", api_keys=["client-key"], dashboard_api_keys=[KEY],
                             decision_log_url=url, budgets=str(budget_file))
    server = LiveServer(create_app(settings, router)).start()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    d = driver
    try:
        d.get(f"{server.url}/dashboard")  # type: ignore[attr-defined]
        d.find_element("id", "key").send_keys("client-key")  # type: ignore[attr-defined]
        d.find_element("id", "login-button").click()  # type: ignore[attr-defined]
        _wait_text(d, "login-error", "client key cannot open")
        d.get_log("browser")  # type: ignore[attr-defined]  # drop the refused login's 401 from the console log
        d.find_element("id", "key").send_keys(KEY)  # type: ignore[attr-defined]
        d.find_element("id", "login-button").click()  # type: ignore[attr-defined]
        _wait_ready(d, "day|*")
        assert KEY not in str(d.get_cookies())  # type: ignore[attr-defined]
        _check(d, _expected(24 * 60))
        assert d.find_element("id", "registry-served").get_attribute("data-value") == router.version  # type: ignore[attr-defined]
        rows = d.find_elements("css selector", "#recent tr[data-key]")  # type: ignore[attr-defined]
        assert len(rows) == len(TRAFFIC) and "seeded prompt 0 about acme" in rows[0].text
        _check_budgets(d, ["acme-daily", "beta-daily", "everything"])
        d.save_screenshot(str(shots / "day-all.png"))  # type: ignore[attr-defined]

        from selenium.webdriver.support.ui import Select

        Select(d.find_element("id", "window")).select_by_value("hour")  # type: ignore[attr-defined]
        _wait_ready(d, "hour|*")
        _check(d, _expected(60))
        d.save_screenshot(str(shots / "hour-all.png"))  # type: ignore[attr-defined]

        Select(d.find_element("id", "tenant")).select_by_value("beta")  # type: ignore[attr-defined]
        _wait_ready(d, "hour|beta")
        _check(d, _expected(60, "beta"))
        _check_budgets(d, ["beta-daily", "everything"])  # the tenant filter leaves acme's budget out
        d.save_screenshot(str(shots / "hour-beta.png"))  # type: ignore[attr-defined]

        Select(d.find_element("id", "window")).select_by_value("30d")  # type: ignore[attr-defined]
        _wait_ready(d, "30d|beta")
        _check(d, _expected(30 * 24 * 60, "beta"))
        d.save_screenshot(str(shots / "30d-beta.png"))  # type: ignore[attr-defined]
        logs = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]  # type: ignore[attr-defined]
        assert not logs, logs  # no CSP violation, no script error
    finally:
        server.stop()
    assert all((shots / n).stat().st_size > 10_000 for n in ("day-all.png", "hour-all.png", "hour-beta.png", "30d-beta.png"))
    print(f"screenshots: {shots}")
    if os.environ.get("LLMROUTE_DASHBOARD_SCREENSHOTS"):
        target = Path(os.environ["LLMROUTE_DASHBOARD_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        for p in shots.iterdir():
            shutil.copy(p, target / p.name)
