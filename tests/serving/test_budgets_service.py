"""Budgets in the service (TestClient, mock provider): 429s, feedback costs, downgrade, pacing, admin API,
alerts to a local webhook receiver, startup refusal and hot reload of the budget file."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from llmroute.budgets.spec import BudgetFileError, key_id
from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.ledger import BudgetLedger, Charge
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained

KEY, ADMIN_KEY = "client-key-1", "admin-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
COST = 0.01  # what every mock provider call costs


def _provider(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body.get("stream"):
        head = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        events = [
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]},
            {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 1, "cost": COST}},
        ]
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"Content-Type": "text/event-stream"})
    return httpx.Response(200, json={
        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "cost": COST},
    })


def _write(path: Path, budgets: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"budgets": budgets}))
    return path


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'decisions.sqlite'}"


def _client(router: Router, trained: Trained, log_url: str, budgets: Path | None, **kw: Any) -> TestClient:
    settings = ServeSettings(
        model="/nonexistent", api_keys=[KEY], admin_api_keys=[ADMIN_KEY], decision_log_url=log_url,
        default_base_url="http://provider.test/v1", cascade_max_attempts=1, scorer_weight=0,
        budgets=str(budgets) if budgets else None, **kw,
    )
    app = create_app(settings, router, core=trained.core, transport=httpx.MockTransport(_provider))
    return TestClient(app, raise_server_exceptions=False)


def _chat(c: TestClient, tenant: str, headers: dict[str, str] = AUTH) -> httpx.Response:
    return c.post("/v1/chat/completions", headers=headers, json={
        "model": "llmroute", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "llmroute": {"tenant": tenant}})


def test_block_budget_refuses_with_429_once_spent_and_books_every_call(
    router: Router, trained: Trained, log_url: str, tmp_path: Path
) -> None:
    f = _write(tmp_path / "b.yaml", [
        {"name": "acme-daily", "tenant": "acme", "amount_usd": 0.025, "window": "daily", "enforcement": "block"}])
    with _client(router, trained, log_url, f) as c:
        codes = [_chat(c, "acme").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]  # 0.01, 0.02, 0.03 >= 0.025: the fourth is refused
        r = _chat(c, "acme")
        err = r.json()["error"]
        assert r.status_code == 429 and err["type"] == "budget_exceeded"
        assert err["budget"] == "acme-daily" and err["limit_usd"] == 0.025
        assert err["spent_usd"] == pytest.approx(0.03)
        assert datetime.fromisoformat(err["resets_at"]) > datetime.now(UTC) and "Retry-After" in r.headers
        routed = c.post("/route", json={"prompt": "hi", "tenant": "acme"}, headers=AUTH)
        assert routed.status_code == 429 and routed.json()["error"]["budget"] == "acme-daily"
        assert _chat(c, "other").status_code == 200  # other tenants are not touched
        metrics = c.get("/metrics", headers=ADMIN).text
        assert 'llmroute_budget_blocked_total{budget="acme-daily"} 3.0' in metrics
    with DecisionLogStore(log_url) as store:
        total, n = BudgetLedger(store.engine).charges_total()
    assert n == 4 and total == pytest.approx(4 * COST)


def test_a_streamed_answer_is_booked_when_its_stream_ends(
    router: Router, trained: Trained, log_url: str, tmp_path: Path
) -> None:
    f = _write(tmp_path / "b.yaml", [{"name": "s", "tenant": "s", "amount_usd": 0.015, "enforcement": "block"}])
    with _client(router, trained, log_url, f) as c:
        for expected_spend in (0.01, 0.02):
            r = c.post("/v1/chat/completions", headers=AUTH, json={
                "model": "llmroute", "stream": True, "messages": [{"role": "user", "content": "2 + 2?"}],
                "llmroute": {"tenant": "s"}})
            assert r.status_code == 200 and "data: [DONE]" in r.text
            deadline = time.monotonic() + 10
            while c.get("/admin/budgets/s", headers=ADMIN).json()["spent_usd"] < expected_spend - 1e-9:
                assert time.monotonic() < deadline, "the streamed answer's cost was not booked"
                time.sleep(0.02)
        assert _chat(c, "s").status_code == 429


def test_feedback_cost_is_booked_once_to_the_decisions_tenant(
    router: Router, trained: Trained, log_url: str, tmp_path: Path
) -> None:
    f = _write(tmp_path / "b.yaml", [
        {"name": "t2", "tenant": "t2", "amount_usd": 1.0, "window": "monthly", "enforcement": "block"},
        {"name": "k", "key": key_id(KEY), "amount_usd": 100.0, "enforcement": "alert"}])
    with _client(router, trained, log_url, f) as c:
        d = c.post("/route", json={"prompt": "hi", "tenant": "t2"}, headers=AUTH).json()["decision_id"]
        first = c.post("/feedback", json={"decision_id": d, "quality": 1.0, "cost_usd": 0.6}, headers=AUTH)
        again = c.post("/feedback", json={"decision_id": d, "quality": 1.0, "cost_usd": 0.6}, headers=AUTH)
        assert first.status_code == 202 and first.json()["cost_charged"] is True
        assert again.status_code == 202 and again.json()["cost_charged"] is False
        d2 = c.post("/route", json={"prompt": "hi", "tenant": "t2"}, headers=AUTH).json()["decision_id"]
        assert c.post("/feedback", json={"decision_id": d2, "quality": 1, "cost_usd": 0.5}, headers=AUTH).json()["cost_charged"]
        assert c.post("/route", json={"prompt": "hi", "tenant": "t2"}, headers=AUTH).status_code == 429
        unknown = c.post("/feedback", json={"decision_id": "nope", "quality": 1, "cost_usd": 0.5}, headers=AUTH)
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "unknown_decision"  # nothing booked (below)
        bad = c.post("/feedback", json={"decision_id": d, "quality": 1, "cost_usd": -1}, headers=AUTH)
        assert bad.status_code == 422
        listed = {b["name"]: b for b in c.get("/admin/budgets", headers=ADMIN).json()["budgets"]}
        assert listed["t2"]["spent_usd"] == pytest.approx(1.1)
        assert listed["k"]["spent_usd"] == pytest.approx(1.1)  # booked to the presenting key as well


def test_downgrade_caps_the_expected_cost_and_says_so(
    router: Router, trained: Trained, log_url: str, tmp_path: Path
) -> None:
    r0 = router.route("Prove that there are infinitely many primes, in detail.")
    costs = sorted(c.expected_cost_usd for c in r0.candidates)
    ceiling = costs[1] * 1.0001  # only the two cheapest models
    f = _write(tmp_path / "b.yaml", [{"name": "cap", "user": "bob", "amount_usd": 10, "enforcement": "downgrade",
                                      "ceiling_usd": ceiling, "downgrade_at": 0}])
    with _client(router, trained, log_url, f) as c:
        body = c.post("/route", json={"prompt": "Prove that there are infinitely many primes, in detail.",
                                      "user": "bob", "target": "100%"}, headers=AUTH).json()
        chosen = next(x for x in body["candidates"] if x["model"] == body["model"])
        assert chosen["expected_cost_usd"] <= ceiling
        assert "budget: budget 'cap'" in body["reason"] and "ceiling" not in body["reason"] or "at most" in body["reason"]
        free = c.post("/route", json={"prompt": "Prove that there are infinitely many primes, in detail.",
                                      "user": "alice", "target": "100%"}, headers=AUTH).json()
        if free["model"] != body["model"]:
            assert f"instead of {free['model']}" in body["reason"]


def test_pacing_lowers_the_target_when_spend_runs_ahead(
    router: Router, trained: Trained, log_url: str, tmp_path: Path
) -> None:
    f = _write(tmp_path / "b.yaml", [{"name": "pace", "tenant": "p", "amount_usd": 0.1, "window": "daily",
                                      "rolling": True, "enforcement": "pace"}])
    with DecisionLogStore(log_url) as store:  # 30 calls that spent 3x the amount in the last day
        ledger = BudgetLedger(store.engine)
        for i in range(30):
            ledger.charge(Charge(f"c{i}", 0.01, datetime.now(UTC), "chat", tenant="p"))
    prompt = "Write a python function that checks whether a number is prime."
    with _client(router, trained, log_url, f) as c:
        paced = c.post("/route", json={"prompt": prompt, "tenant": "p", "target": "100%"}, headers=AUTH).json()
        free = c.post("/route", json={"prompt": prompt, "tenant": "q", "target": "100%"}, headers=AUTH).json()
        control = c.app_state["services"].budgets
        level = control.levels[("pace", router.default_rule)]  # the budget's trade-off, kept for its next request
        pacer = next(iter(control._pacers.values()))
        assert pacer.cost[0] <= level < pacer.cost[-1]  # the spend ran 3x ahead: below the dearest knob
        c.post("/route", json={"prompt": prompt, "tenant": "p", "target": "100%"}, headers=AUTH)
        assert set(control.levels) == {("pace", router.default_rule)}  # one per budget and rule
    assert "paces spend" in paced["reason"] and paced["target"].startswith("quality")
    cost = {x["model"]: x["expected_cost_usd"] for x in paced["candidates"]}
    assert cost[paced["model"]] <= cost[free["model"]]
    if paced["model"] != free["model"]:
        assert f"instead of {free['model']}" in paced["reason"]
    else:
        assert "(same pick)" in paced["reason"]


def test_admin_budgets_api(router: Router, trained: Trained, log_url: str) -> None:
    with _client(router, trained, log_url, None) as c:
        body = {"tenant": "acme", "amount_usd": 5, "window": "weekly", "timezone": "Asia/Kolkata", "enforcement": "block"}
        assert c.put("/admin/budgets/acme", json=body, headers=AUTH).status_code == 403  # client keys are not enough
        r = c.put("/admin/budgets/acme", json=body, headers=ADMIN)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["source"] == "api" and got["spent_usd"] == 0 and got["window_start"].endswith("+00:00")
        assert datetime.fromisoformat(got["window_start"]).astimezone(UTC).minute == 30  # Monday 00:00 in India
        dup = c.put("/admin/budgets/acme2", json=body, headers=ADMIN)
        assert dup.status_code == 409 and "duplicate budget" in dup.json()["error"]["message"]
        bad = c.put("/admin/budgets/x", json={**body, "tenant": "z", "amount_usd": "NaN"}, headers=ADMIN)
        assert bad.status_code == 422 and "field 'amount_usd'" in bad.json()["error"]["message"]
        bad = c.put("/admin/budgets/x", json={**body, "tenant": "z", "window": "hourly"}, headers=ADMIN)
        assert bad.status_code == 422 and "field 'window'" in bad.json()["error"]["message"]
        assert [b["name"] for b in c.get("/admin/budgets", headers=ADMIN).json()["budgets"]] == ["acme"]
        assert c.get("/admin/budgets/acme", headers=ADMIN).json()["amount_usd"] == 5
        assert c.delete("/admin/budgets/acme", headers=ADMIN).status_code == 200
        assert c.delete("/admin/budgets/acme", headers=ADMIN).status_code == 404
        assert c.get("/admin/budgets", headers=ADMIN).json()["budgets"] == []


class _Receiver:
    """A local webhook receiver that fails its first ``fail_first`` posts with 500."""

    def __init__(self, fail_first: int) -> None:
        self.got: list[dict[str, Any]] = []
        self.posts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts += 1
                if outer.posts <= fail_first:
                    self.send_response(500)
                else:
                    outer.got.append(json.loads(data))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver(fail_first=2)
    yield r
    r.close()


def test_alerts_fire_once_per_window_to_log_metrics_and_a_retried_webhook(
    router: Router, trained: Trained, log_url: str, tmp_path: Path, receiver: _Receiver,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    import llmroute.serving.budget_control as bc

    monkeypatch.setattr(bc, "WEBHOOK_FIRST_BACKOFF_S", 0.05)
    f = _write(tmp_path / "b.yaml", [{"name": "hot", "tenant": "h", "amount_usd": 0.05, "window": "monthly",
                                      "enforcement": "alert", "webhook": receiver.url, "forecast": False}])
    with caplog.at_level("WARNING", logger="llmroute.serving.budgets"), \
            _client(router, trained, log_url, f, budget_refresh_s=0.05) as c:
        for _ in range(3):  # 0.03 = 60%: the 50% alert
            assert _chat(c, "h").status_code == 200
        deadline = time.monotonic() + 20
        while not receiver.got and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(3):  # 0.06 = 120%: the 80% and 100% alerts; the 50% one does not fire again
            assert _chat(c, "h").status_code == 200
        while len(receiver.got) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        metrics = c.get("/metrics", headers=ADMIN).text
    keys = [g["alert"] for g in receiver.got]
    assert sorted(keys) == ["threshold:0.5", "threshold:0.8", "threshold:1"], keys
    assert receiver.posts == 5  # two failed posts were retried
    assert receiver.got[0]["budget"] == "hot" and receiver.got[0]["amount_usd"] == 0.05
    assert 'llmroute_budget_alerts_total{alert="threshold:0.5",budget="hot"} 1.0' in metrics
    assert 'llmroute_budget_share{budget="hot"} 1.2' in metrics
    assert sum(r.message.startswith("budget alert: ") for r in caplog.records) == 3


def test_bad_budget_file_refuses_to_start_and_a_bad_reload_keeps_the_last_good(
    router: Router, trained: Trained, log_url: str, tmp_path: Path
) -> None:
    bad = _write(tmp_path / "bad.yaml", [{"name": "x", "tenant": "a", "amount_usd": -1}])
    with (
        pytest.raises(BudgetFileError, match=r"bad.yaml, budget #1 \('x'\), field 'amount_usd'"),
        _client(router, trained, log_url, bad),
    ):
        pass
    f = _write(tmp_path / "b.yaml", [{"name": "blk", "tenant": "a", "amount_usd": 0.005, "enforcement": "block"}])
    with _client(router, trained, log_url, f, budget_refresh_s=0.05) as c:
        assert c.post("/route", json={"prompt": "hi", "tenant": "a"}, headers=AUTH).status_code == 200
        assert _chat(c, "a").status_code == 200  # spends 0.01 >= 0.005
        assert c.post("/route", json={"prompt": "hi", "tenant": "a"}, headers=AUTH).status_code == 429
        time.sleep(0.05)
        f.write_text("budgets: [{name: blk, tenant: a, amount_usd: 5, window: fortnightly}]")
        deadline = time.monotonic() + 10
        while c.get("/admin/budgets", headers=ADMIN).json()["file_error"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        listed = c.get("/admin/budgets", headers=ADMIN).json()
        assert "field 'window'" in listed["file_error"] and listed["budgets"][0]["amount_usd"] == 0.005
        assert c.post("/route", json={"prompt": "hi", "tenant": "a"}, headers=AUTH).status_code == 429
        _write(f, [{"name": "blk", "tenant": "a", "amount_usd": 5, "enforcement": "block"}])
        while c.get("/admin/budgets", headers=ADMIN).json()["budgets"][0]["amount_usd"] != 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.post("/route", json={"prompt": "hi", "tenant": "a"}, headers=AUTH).status_code == 200


def _watch_charges_and_outcomes(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Record the order of charges committed and outcomes logged; ``control["fail"]`` makes charges fail and
    ``control["delay_s"]`` makes them slow."""
    from llmroute.data.decision_log.records import OutcomeRecord
    from llmroute.serving.decision_logging import DecisionLog

    events: list[tuple[str, str]] = []
    charge_many, submit = BudgetLedger.charge_many, DecisionLog.submit
    control: dict[str, Any] = {"fail": False, "delay_s": 0.0}

    def booked(self: BudgetLedger, charges: Any) -> list[bool]:
        time.sleep(control["delay_s"])
        if control["fail"]:
            events.append(("charge failed", charges[0].charge_id))
            raise RuntimeError("the ledger is down")
        out = charge_many(self, charges)
        events.extend(("charged", c.charge_id) for c in charges)
        return out

    def logged(self: DecisionLog, record: Any) -> bool:
        if isinstance(record, OutcomeRecord):
            events.append(("outcome", record.decision_id))
        return submit(self, record)

    monkeypatch.setattr(BudgetLedger, "charge_many", booked)
    monkeypatch.setattr(DecisionLog, "submit", logged)
    return events, control


def test_under_a_budget_the_charge_is_committed_then_the_outcome_logged_both_before_the_answer(
    router: Router, trained: Trained, log_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, control = _watch_charges_and_outcomes(monkeypatch)
    f = _write(tmp_path / "b.yaml", [{"name": "watch", "tenant": "acme", "amount_usd": 100.0, "enforcement": "alert"}])
    with _client(router, trained, log_url, f) as c:
        r = _chat(c, "acme")
        assert r.status_code == 200, r.text
        did = r.headers["X-LLMRoute-Decision-Id"]
        assert events == [("charged", did), ("outcome", did)]  # in this order, both before the answer came
        events.clear()
        control["fail"] = True  # a charge that fails: no answer, and the outcome is logged all the same
        r = _chat(c, "acme")
        assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
        assert [e[0] for e in events] == ["charge failed", "outcome"] and events[0][1] == events[1][1]


def test_without_a_budget_the_answer_does_not_wait_for_the_ledger_and_the_spend_is_booked_all_the_same(
    router: Router, trained: Trained, log_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events, control = _watch_charges_and_outcomes(monkeypatch)
    f = _write(tmp_path / "b.yaml", [{"name": "other", "tenant": "someone-else", "amount_usd": 100.0}])
    with _client(router, trained, log_url, f) as c:
        control["delay_s"] = 1.0  # a slow ledger
        t0 = time.monotonic()
        r = _chat(c, "acme")
        answered_s = time.monotonic() - t0
        assert r.status_code == 200, r.text
        did = r.headers["X-LLMRoute-Decision-Id"]
        assert events == [("outcome", did)] and answered_s < 0.9  # answered before the charge was in
        deadline = time.monotonic() + 10
        while ("charged", did) not in events and time.monotonic() < deadline:
            time.sleep(0.02)
        assert events == [("outcome", did), ("charged", did)]
        c.put("/admin/budgets/acme", headers=ADMIN, json={"tenant": "acme", "amount_usd": 1.0})
        listed = {b["name"]: b for b in c.get("/admin/budgets", headers=ADMIN).json()["budgets"]}
        assert listed["acme"]["spent_usd"] == pytest.approx(0.01)  # a budget made later sees the spend
        control.update(fail=True, delay_s=0.0)  # a failing ledger: answered, the failure logged
        c.delete("/admin/budgets/acme", headers=ADMIN)
        with caplog.at_level(logging.ERROR, logger="llmroute.serving.budgets"):
            r = _chat(c, "acme")
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + 10
            while "failed" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
        assert f"budget charge {r.headers['X-LLMRoute-Decision-Id']} failed: RuntimeError: the ledger is down" in caplog.text


@pytest.mark.parametrize("shipper", ["process", "thread"])
def test_the_decision_log_is_written_from_a_child_process_by_default_or_from_a_thread(
    router: Router, trained: Trained, log_url: str, shipper: str
) -> None:
    from llmroute.data.decision_log.ship_process import ProcessSink

    kw = {} if shipper == "process" else {"decision_log_shipper": "thread"}
    with _client(router, trained, log_url, None, **kw) as c:
        log = c.app_state["services"].decision_log
        assert ServeSettings().decision_log_shipper == "process"
        ids = [_chat(c, "acme").headers["X-LLMRoute-Decision-Id"] for _ in range(3)]
        assert log.writer.flush(30)
        sink = log.writer.store
        if shipper == "process":
            assert isinstance(sink, ProcessSink) and sink.pid is not None and sink.pid != os.getpid()
            child = sink._proc
        else:
            assert sink is log.store
        with DecisionLogStore(log_url) as store:
            assert store.counts()["decisions"] == 3 and store.counts()["outcomes"] == 3
            assert {d.decision_id for batch in store.iter_decisions() for d in batch} == set(ids)
    if shipper == "process":
        assert child is not None and child.returncode == 0  # ended with the service
