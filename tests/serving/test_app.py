"""The routing service over ASGI (TestClient): /route, auth, limits, health, models, reload, metrics."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN_KEY = "admin-key-456"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _settings(**kw: Any) -> ServeSettings:
    return ServeSettings(**{"model": "/nonexistent/router", "api_keys": [KEY], "admin_api_keys": [ADMIN_KEY], **kw})


@pytest.fixture
def client(router: Router, trained: Trained) -> Iterator[TestClient]:
    app = create_app(_settings(max_body_bytes=20_000), router, core=trained.core)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_route_returns_decision(client: TestClient, router: Router) -> None:
    r = client.post("/route", json={"prompt": "What is the capital of France?", "target": "95%"}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] in router.models
    assert uuid.UUID(body["decision_id"]).version == 7
    assert body["router_version"] == router.version
    assert {c["model"] for c in body["candidates"]} == set(router.models)
    assert all(0 <= c["probability"] <= 1 and c["expected_cost_usd"] >= 0 for c in body["candidates"])
    assert body["reason"]


def test_route_accepts_messages_and_constraints(client: TestClient) -> None:
    allowed = ["claude-instant-v1", "gpt-3.5-turbo-1106"]
    r = client.post(
        "/route",
        json={"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
              "target": 0.6, "allowed_models": allowed, "user": "u1", "tenant": "t1"},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] in allowed
    assert r.json()["target"] == "quality 0.600"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "exactly one of 'prompt'"),
        ({"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "exactly one of 'prompt'"),
        ({"prompt": "x", "target": "lots"}, "target must be a share of the best model"),
        ({"prompt": "x", "confidence": 1.5}, "confidence"),
        ({"prompt": "x", "required_capabilities": ["telepathy"]}, "required_capabilities"),
        ({"prompt": "x", "rule": "nope"}, "rule: unknown rule 'nope'; expected one of 'threshold', 'utility'"),
    ],
)
def test_bad_body_is_422_with_message(client: TestClient, body: dict[str, Any], expected: str) -> None:
    r = client.post("/route", json=body, headers=AUTH)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "invalid_request"
    assert expected in err["message"]
    assert "Traceback" not in r.text


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/route", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "invalid_request"


def test_no_eligible_model_is_422_naming_reasons(client: TestClient, router: Router) -> None:
    r = client.post("/route", json={"prompt": "x", "excluded_models": list(router.models)}, headers=AUTH)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "no_eligible_model"
    assert err["reasons"] == dict.fromkeys(router.models, "in excluded_models")
    assert "in excluded_models" in err["message"]


def test_auth(client: TestClient, router: Router) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": KEY}):
        r = client.post("/route", json={"prompt": "x"}, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "unauthorized"
    for path in ("/models", "/metrics"):
        assert client.get(path).status_code == 401
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/v1/chat/completions", json={}).status_code == 401
    assert client.get("/health").status_code == 200
    ready = client.get("/ready").json()
    assert ready.pop("worker_pid") == os.getpid() and ready.pop("isolated_check") in ("ready", "starting", "off")
    assert ready == {"status": "ready", "router_version": router.version, "models_available": len(router.models),
                     "unavailable": {}, "decision_log": "ok"}


def test_admin_routes_need_an_admin_key(client: TestClient, router: Router, trained: Trained) -> None:
    r = client.post("/admin/reload", headers=AUTH)  # a client key is not an admin key
    assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden"
    assert client.post("/admin/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/admin/reload", headers=ADMIN).status_code == 503  # allowed; the folder does not exist
    assert client.post("/route", json={"prompt": "x"}, headers=ADMIN).status_code == 200  # admin is a client too
    with TestClient(create_app(_settings(admin_api_keys=[]), router, core=trained.core)) as c:
        r = c.post("/admin/reload", headers=AUTH)  # client keys but no admin key: admin routes are closed
        assert r.status_code == 403 and "no admin key is configured" in r.json()["error"]["message"]


def test_bearer_takes_precedence_over_x_api_key(client: TestClient) -> None:
    both_ok = {"Authorization": f"Bearer {KEY}", "X-API-Key": "stale"}
    assert client.post("/route", json={"prompt": "x"}, headers=both_ok).status_code == 200
    stale_bearer = {"Authorization": "Bearer stale", "X-API-Key": KEY}
    assert client.post("/route", json={"prompt": "x"}, headers=stale_bearer).status_code == 401
    assert client.post("/route", json={"prompt": "x"}, headers={"X-API-Key": KEY}).status_code == 200


def test_auth_off_without_keys(router: Router, trained: Trained) -> None:
    with TestClient(create_app(_settings(api_keys=[], admin_api_keys=[]), router, core=trained.core)) as c:
        assert c.post("/route", json={"prompt": "x"}).status_code == 200


def test_body_too_large_is_413(client: TestClient) -> None:
    r = client.post("/route", json={"prompt": "x" * 30_000}, headers=AUTH)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"prompt": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}'

    r = client.post("/route", content=chunks(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413


def test_models_lists_catalog_info(client: TestClient, router: Router) -> None:
    r = client.get("/models", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["router_version"] == router.version
    assert [m["name"] for m in body["models"]] == list(router.models)
    gpt4 = next(m for m in body["models"] if m["name"] == "gpt-4-1106-preview")
    assert gpt4["catalog"]["input_price_per_1m"] == 10.0
    assert "api_key_env" not in gpt4["catalog"] and "endpoint" not in gpt4["catalog"]


def test_failed_reload_keeps_current_router(client: TestClient, router: Router) -> None:
    r = client.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["type"] == "reload_failed" and "/nonexistent/router" in err["message"]
    assert err["router_version"] == router.version
    r = client.post("/route", json={"prompt": "x"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["router_version"] == router.version
    assert client.get("/ready").status_code == 200


def test_reload_swaps_atomically(router: Router, trained: Trained) -> None:
    """A request in flight keeps the router it started with; later requests get the reloaded one."""
    router = router.with_version("old-version")
    started, release = threading.Event(), threading.Event()
    real_route = router.route_query  # what the service calls (through its micro-batcher)

    def slow_route(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(300)  # the reload checks its candidate in a child process first
        return real_route(*args, **kwargs)

    object.__setattr__(router, "route_query", slow_route)  # a stub on this (frozen) instance
    app = create_app(_settings(model=str(trained.folder)), router, core=trained.core)
    with TestClient(app) as c:
        result: dict[str, Any] = {}
        t = threading.Thread(target=lambda: result.update(c.post("/route", json={"prompt": "x"}, headers=AUTH).json()))
        t.start()
        assert started.wait(30)
        r = c.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json() == {"reloaded": True, "router_version": trained.router.version, "previous_version": "old-version"}
        release.set()
        t.join(30)
        assert result["router_version"] == "old-version"
        assert c.post("/route", json={"prompt": "x"}, headers=AUTH).json()["router_version"] == trained.router.version


def test_lifespan_loads_router_and_reports_failures(trained: Trained) -> None:
    with TestClient(create_app(_settings(model=str(trained.folder)), core=trained.core)) as c:
        deadline = time.monotonic() + 60
        while (r := c.get("/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = r.json()
        assert ready.pop("worker_pid") == os.getpid() and ready.pop("isolated_check") in ("ready", "starting", "off")
        assert ready == {"status": "ready", "router_version": trained.router.version,
                         "models_available": len(trained.router.models), "unavailable": {}, "decision_log": "ok"}
    with TestClient(create_app(_settings(), core=trained.core)) as c:
        deadline = time.monotonic() + 10
        while "nonexistent" not in (r := c.get("/ready")).text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.status_code == 503 and "no router.json" in r.json()["reason"]
        r = c.post("/route", json={"prompt": "x"}, headers=AUTH)
        assert r.status_code == 503 and r.json()["error"]["type"] == "router_not_ready"


def test_unexpected_error_hides_stack_trace(router: Router, trained: Trained) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    object.__setattr__(router, "route_query", boom)  # a stub on this (frozen) instance
    with TestClient(create_app(_settings(), router, core=trained.core), raise_server_exceptions=False) as c:
        r = c.post("/route", json={"prompt": "x"}, headers=AUTH)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "internal_error"
    assert "secret internals" not in r.text and "Traceback" not in r.text


def test_metrics_exposition(client: TestClient) -> None:
    client.post("/route", json={"prompt": "x"}, headers=AUTH)
    client.post("/route", json={}, headers=AUTH)
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'llmroute_requests_total{endpoint="/route",status="200"} 1.0' in r.text
    assert 'llmroute_requests_total{endpoint="/route",status="422"} 1.0' in r.text
    assert "llmroute_request_latency_seconds_bucket" in r.text
    assert "llmroute_routed_total{model=" in r.text


def test_apps_do_not_share_metrics(router: Router, trained: Trained) -> None:
    apps = [create_app(_settings(api_keys=[], admin_api_keys=[]), router, core=trained.core) for _ in range(2)]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        a.post("/route", json={"prompt": "x"})
        assert 'endpoint="/route"' not in b.get("/metrics").text


def test_polling_reloads_when_the_source_version_changes(router: Router, trained: Trained) -> None:
    router = router.with_version("old-version")
    settings = _settings(model=str(trained.folder), reload_poll_s=0.05)
    with TestClient(create_app(settings, router, core=trained.core)) as c:
        deadline = time.monotonic() + 60
        while (v := c.get("/ready").json()["router_version"]) == "old-version" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert v == trained.router.version


def test_loaded_router_is_kept_out_of_full_garbage_collections(router: Router, trained: Trained) -> None:
    """Full collections walked the router's objects on every pass and stalled requests in flight."""
    import gc

    gc.unfreeze()
    with TestClient(create_app(_settings(model=str(trained.folder)), router, core=trained.core)) as c:
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        assert c.post("/admin/reload", headers=ADMIN).status_code == 200
        assert gc.get_freeze_count() > 0
    gc.unfreeze()
