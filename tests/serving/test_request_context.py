"""The one-dependency request context of /route and /v1/chat/completions: the same checks, in the same order,
with the same errors and the same OpenAPI parameters as the four dependencies it replaces."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings

KEY = "ctx-key-1"
BAD_BODIES: list[dict[str, Any]] = [{}, {"model": 3, "messages": "no"}]


def _client(**kw: Any) -> TestClient:
    settings = ServeSettings(model="/nonexistent/router", api_keys=[KEY], admin_api_keys=["ctx-admin"], **kw)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_the_key_is_checked_before_the_router_and_both_before_the_body() -> None:
    with _client() as c:
        for path in ("/route", "/v1/chat/completions"):
            for body in BAD_BODIES:
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer ", "X-API-Key": KEY}):
                    r = c.post(path, json=body, headers=headers)
                    assert r.status_code == 401, (path, body, headers)
                    assert r.json()["error"]["type"] == "unauthorized"
                    assert r.headers["WWW-Authenticate"] == "Bearer"
                # a valid key (either header, the admin key too): then no router is loaded -> 503, before the body's 422
                for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}, {"X-API-Key": "ctx-admin"}):
                    r = c.post(path, json=body, headers=headers)
                    assert r.status_code == 503, (path, body, headers, r.text)
                    assert r.json()["error"]["type"] == "router_not_ready" and r.headers["Retry-After"] == "5"


def test_without_keys_auth_is_off() -> None:
    with TestClient(create_app(ServeSettings(model="/nonexistent/router")), raise_server_exceptions=False) as c:
        assert c.post("/v1/chat/completions", json={}).status_code == 503  # past the key check, no router


def test_the_key_headers_are_documented_like_every_authenticated_route() -> None:
    with _client() as c:
        paths = c.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()["paths"]
    expected = paths["/feedback"]["post"]["parameters"]  # a route still on deps.Authenticated
    assert {p["name"] for p in expected} == {"authorization", "x-api-key"}
    assert paths["/route"]["post"]["parameters"] == expected
    assert paths["/v1/chat/completions"]["post"]["parameters"] == expected
    assert "requestBody" in paths["/v1/chat/completions"]["post"]
