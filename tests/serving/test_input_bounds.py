"""Input that must not take the service down or slow others: validation (422), unexpected errors (500
without dropping keep-alive), bounded request headers (431, 408), docs behind a key, long prompts,
and provider credential errors that must not cascade."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmroute.providers.chat import CallResult
from llmroute.router.decision import Candidate, Decision
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.cascade import run_cascade
from llmroute.serving.http_protocol import PROTOCOL_PATH, header_limits
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained
from tests.serving.servers import LiveServer

KEY = "client-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _settings(**kw: Any) -> ServeSettings:
    return ServeSettings(**{"model": "/nonexistent/router", "api_keys": [KEY], "decision_log_url": "off", **kw})


@pytest.fixture
def client(router: Router, trained: Trained) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(), router, core=trained.core), raise_server_exceptions=True) as c:
        yield c


BAD_ROUTE_BODIES = [
    (b'{"prompt": "hi", "target": true}', "target"),
    (b'{"prompt": "hi", "rule": ""}', "rule"),
    (b'{"prompt": "hi", "rule": "bogus"}', "rule"),
    (b'{"prompt": "hi", "max_cost_usd": Infinity}', "max_cost_usd"),
    (b'{"prompt": "hi", "max_cost_usd": 1e308}', "max_cost_usd"),
    (b'{"prompt": "hi", "max_latency_ms": NaN}', "max_latency_ms"),
    (b'{"prompt": "hi", "confidence": false}', "confidence"),
    (b'{"prompt": "hi \\ud800 there"}', "lone surrogate"),
    (b'{"prompt": "hi", "tenant": "' + b"t" * 201 + b'"}', "tenant"),
    (b'{"prompt": "hi", "tenant": "acme\\u0000"}', "tenant"),
    (b'{"prompt": "hi", "allowed_models": ["' + b"m" * 201 + b'"]}', "allowed_models"),
]


@pytest.mark.parametrize(("raw", "says"), BAD_ROUTE_BODIES)
def test_route_rejects_bad_values_with_422(client: TestClient, raw: bytes, says: str) -> None:
    r = client.post("/route", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert says in r.text


@pytest.mark.parametrize(("raw", "says"), [
    (b'{"model": "llmroute", "messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}', "temperature"),
    (b'{"model": "llmroute", "messages": [{"role": "user", "content": "a \\udc00"}]}', "lone surrogate"),
    (b'{"model": "llmroute", "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"1": NaN}}', "logit_bias.1"),
])
def test_chat_rejects_non_finite_numbers_and_invalid_unicode_in_passed_through_fields(
    client: TestClient, raw: bytes, says: str
) -> None:
    r = client.post("/v1/chat/completions", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert says in r.text


def test_feedback_quality_must_be_a_number_not_a_bool(client: TestClient) -> None:
    r = client.post("/feedback", json={"decision_id": "d1", "quality": False}, headers=AUTH)
    assert r.status_code == 422 and "not true/false" in r.text


def test_a_999_kb_prompt_routes(client: TestClient) -> None:
    prompt = ("The quick brown fox jumps over the lazy dog. " * 22_200)[:999_000]
    r = client.post("/route", json={"prompt": prompt + " What is 2 + 2?"}, headers=AUTH)
    # routed promptly to a decision: ~222k tokens fit no model's context window (an unknown window is
    # assumed to be the smallest known one, issue 12), so the answer is the 422 that names every window
    assert r.status_code == 422, r.text[:300]
    err = r.json()["error"]
    assert err["type"] == "no_eligible_model"
    assert all("context window" in why for why in err["reasons"].values())


def test_unexpected_errors_are_500_json_and_not_reraised(router: Router, trained: Trained,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import llmroute.serving.routes.routing as routing

    def boom(*_: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(routing, "route_with_budgets", boom)
    # raise_server_exceptions=True: the test fails if the app lets the exception out (which closes keep-alive)
    with TestClient(create_app(_settings(), router, core=trained.core), raise_server_exceptions=True) as c:
        r = c.post("/route", json={"prompt": "hi"}, headers=AUTH)
    assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
    assert "secret internals" not in r.text


def test_a_500_keeps_the_keep_alive_connection(router: Router, trained: Trained,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import llmroute.serving.routes.routing as routing

    real = routing.route_with_budgets

    def sometimes(*args: Any) -> Any:
        if args[2] == "boom":
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(routing, "route_with_budgets", sometimes)
    server = LiveServer(create_app(_settings(), router, core=trained.core), http=PROTOCOL_PATH).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/route", body=b'{"prompt": "boom"}', headers={**AUTH, "Content-Type": "application/json"})
        first = conn.getresponse()
        assert first.status == 500
        first.read()
        sock = conn.sock
        conn.request("POST", "/route", body=b'{"prompt": "hello"}', headers={**AUTH, "Content-Type": "application/json"})
        second = conn.getresponse()
        assert second.status == 200
        second.read()
        assert conn.sock is sock and sock is not None  # the same connection served both
        conn.close()
    finally:
        server.stop()


def test_docs_need_a_key_unless_configured_open(router: Router, trained: Trained) -> None:
    with TestClient(create_app(_settings(), router, core=trained.core)) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers=AUTH).status_code == 200, path
        assert "/route" in c.get("/openapi.json", headers=AUTH).json()["paths"]
        assert c.get("/health").status_code == 200
    with TestClient(create_app(_settings(open_docs=True), router, core=trained.core)) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 200, path


def test_feedback_has_its_own_metrics_label(client: TestClient) -> None:
    client.post("/feedback", json={"decision_id": "d1", "quality": 0.5}, headers=AUTH)
    metrics = client.get("/metrics", headers=AUTH).text
    assert 'llmroute_requests_total{endpoint="/feedback",status="503"} 1.0' in metrics


@pytest.fixture
def bounded_server(router: Router, trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("LLMROUTE_SERVE_MAX_HEADER_BYTES", "16384")
    monkeypatch.setenv("LLMROUTE_SERVE_HEADER_TIMEOUT_S", "1.0")
    header_limits.cache_clear()
    server = LiveServer(create_app(_settings(), router, core=trained.core), http=PROTOCOL_PATH).start()
    yield server
    server.stop()
    header_limits.cache_clear()


def _health_times(port: int, stop: threading.Event, out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set():
        t0 = time.perf_counter()
        conn.request("GET", "/health")
        conn.getresponse().read()
        out.append(time.perf_counter() - t0)
        time.sleep(0.01)
    conn.close()


def _reply_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def test_a_50_mb_header_is_refused_early_and_does_not_stall_health(bounded_server: LiveServer) -> None:
    times: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=_health_times, args=(bounded_server.port, stop, times))
    probe.start()
    sent = 0
    with socket.create_connection(("127.0.0.1", bounded_server.port)) as sock:
        sock.sendall(b"GET /route HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        chunk = b"a" * (1 << 20)
        try:
            for _ in range(50):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server answered 431 and closed: the rest of the header is never read
        status = _reply_status(sock)
    time.sleep(0.2)
    stop.set()
    probe.join(10)
    assert status == 431
    assert sent < 50 << 20  # refused long before the end of the header
    assert times and max(times) < 1.0, max(times)


def test_slow_headers_get_408(bounded_server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", bounded_server.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        status = 0
        try:
            for i in range(40):
                sock.sendall(f"X-Slow-{i}: y\r\n".encode())
                time.sleep(0.1)
        except OSError:
            pass
        sock.settimeout(5)
        status = _reply_status(sock)
        elapsed = time.monotonic() - t0
    assert status == 408 and elapsed < 4.5
    # the server is still fine
    conn = http.client.HTTPConnection("127.0.0.1", bounded_server.port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()


def _decision(models: list[str]) -> Decision:
    cands = tuple(Candidate(m, 0.5 + 0.1 * i, 0.001 * (i + 1), True) for i, m in enumerate(models))
    return Decision(model=models[0], candidates=cands, reason="", cleared=True, rule="threshold", knob=0.5,
                    target=None, task_hint=None, router_version="v")


def test_a_credentials_error_does_not_escalate_to_models_behind_the_same_credentials() -> None:
    calls: list[str] = []

    async def call(model: str) -> CallResult:
        calls.append(model)
        if model.startswith("a-"):
            return CallResult(False, 1.0, status=401, error="HTTP 401: refused", kind="http_401")
        return CallResult(True, 1.0, body={"choices": [{"message": {"content": "ok"}}]}, status=200)

    decision = _decision(["a-small", "a-medium", "b-large"])
    shared = asyncio.run(run_cascade(decision, "p", call, {}, 0.0, 3))
    assert calls == ["a-small"] and shared.final_model is None  # no credentials function: all share them
    calls.clear()
    split = asyncio.run(run_cascade(decision, "p", call, {}, 0.0, 3, credentials=lambda m: m.split("-")[0]))
    assert calls == ["a-small", "b-large"] and split.final_model == "b-large"
    assert split.attempts[0].escalated_because == "config_error"
