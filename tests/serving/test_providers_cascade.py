"""Provider client (httpx.MockTransport) and cascade order, without servers or a trained router."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from llmroute.data.catalog import load_catalog
from llmroute.providers.chat import CallResult, ChatProvider, Endpoint, resolve_endpoint
from llmroute.providers.config import ProviderClientConfig
from llmroute.router.decision import Candidate, Decision
from llmroute.serving.cascade import answer_confidence, next_model, run_cascade
from llmroute.serving.settings import ServeSettings

OK = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
      "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


def _provider(handler: Any, **kw: Any) -> tuple[ChatProvider, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    settings = ServeSettings(provider_retries=2, retry_backoff_s=0.001, **kw)
    return ChatProvider(http, settings.provider_client_config()), http


def test_retries_on_429_and_5xx_then_succeeds() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(429, json={"error": {"message": "slow down"}})
        if len(seen) == 2:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json=OK)

    async def go() -> CallResult:
        provider, http = _provider(handler)
        async with http:
            return await provider.complete(Endpoint("m", "http://p/v1", "sk-secret"), {"messages": []})

    res = asyncio.run(go())
    assert res.ok and res.tries == 3 and res.body == OK
    assert str(seen[0].url) == "http://p/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-secret"
    assert json.loads(seen[0].content) == {"messages": [], "model": "m", "stream": False}


def test_gives_up_after_retries_and_does_not_retry_4xx() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        status = 500 if request.url.host == "five" else 400
        return httpx.Response(status, json={"error": {"message": f"boom {status}"}})

    async def go(host: str) -> CallResult:
        provider, http = _provider(handler)
        async with http:
            return await provider.complete(Endpoint("m", f"http://{host}/v1", "sk-secret"), {})

    res = asyncio.run(go("five"))
    assert not res.ok and res.kind == "http_500" and res.tries == 3 and calls["n"] == 3
    assert res.error == "HTTP 500: the provider had an internal error" and "sk-secret" not in repr(res)
    assert "boom" not in repr(res)  # the provider's own words go to the log only
    res = asyncio.run(go("four"))
    assert res.kind == "http_400" and res.tries == 1


def test_timeout_and_bad_response_and_missing_endpoint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slow":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"nope": 1})

    async def go(base: str | None) -> CallResult:
        provider, http = _provider(handler)
        async with http:
            return await provider.complete(Endpoint("m", base), {})

    assert asyncio.run(go("http://slow/v1")).kind == "timeout"
    assert asyncio.run(go("http://slow/v1")).tries == 1
    assert asyncio.run(go("http://bad/v1")).kind == "bad_response"
    assert asyncio.run(go(None)).kind == "no_endpoint"


def test_resolve_endpoint_order_and_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = load_catalog()
    spec = catalog["gpt-4-1106-preview"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    s = ServeSettings(provider_base_urls={"gpt-4-1106-preview": "http://over/v1/"}, default_base_url="http://gw/v1")
    ep = resolve_endpoint("gpt-4-1106-preview", spec, s.provider_client_config())
    assert ep.base_url == "http://over/v1" and ep.api_key == "sk-env" and "sk-env" not in repr(ep)
    assert resolve_endpoint("gpt-4-1106-preview", spec, ProviderClientConfig(default_base_url="http://gw/v1")).base_url == "http://gw/v1"
    assert resolve_endpoint("x", None, ProviderClientConfig()).base_url is None


def test_service_settings_give_the_provider_client_its_own_config() -> None:
    s = ServeSettings(provider_base_urls={"m": "http://m/v1"}, default_base_url="http://gw/v1", provider_timeout_s=7.5,
                      provider_connect_timeout_s=1.5, provider_retries=4, retry_backoff_s=0.125)
    assert s.provider_client_config() == ProviderClientConfig(
        base_urls={"m": "http://m/v1"}, default_base_url="http://gw/v1", timeout_s=7.5, connect_timeout_s=1.5,
        retries=4, backoff_s=0.125,
    )
    http = httpx.AsyncClient()
    try:
        provider = ChatProvider(http, s.provider_client_config())
        assert (provider.timeouts.read_s, provider.timeouts.connect_s, provider.retries, provider.backoff) == (
            7.5, 1.5, 4, 0.125)
    finally:
        asyncio.run(http.aclose())
    with pytest.raises(ValueError, match="timeouts must be positive"):
        ProviderClientConfig(timeout_s=0)
    with pytest.raises(ValueError, match="must not be negative"):
        ProviderClientConfig(retries=-1)


def _decision(cands: list[tuple[str, float, float]], chosen: str) -> Decision:
    return Decision(
        model=chosen, candidates=tuple(Candidate(m, p, c, True) for m, p, c in cands),
        reason="", cleared=True, rule="threshold", knob=0.5, router_version="v",
    )


CANDS = [("cheap", 0.5, 1.0), ("mid", 0.7, 2.0), ("midlow", 0.4, 2.5), ("top", 0.9, 5.0)]


def test_next_model_order() -> None:
    c = {m: Candidate(m, p, cost, True) for m, p, cost in CANDS}
    assert next_model(c, "cheap", {"cheap"}, failed=False) == "mid"
    assert next_model(c, "mid", {"cheap", "mid"}, failed=False) == "top"
    assert next_model(c, "top", {"cheap", "mid", "top"}, failed=False) is None
    # a failed top model falls back to the most probable untried one
    assert next_model(c, "top", {"top"}, failed=True) == "mid"
    c["mid"] = Candidate("mid", 0.7, 2.0, False, "in excluded_models")
    assert next_model(c, "cheap", {"cheap"}, failed=False) == "top"


def test_answer_confidence_uses_logprobs_when_given() -> None:
    assert answer_confidence(0.6, OK) == 0.6
    body = {"choices": [{"logprobs": {"content": [{"logprob": 0.0}, {"logprob": 0.0}]}}]}
    assert answer_confidence(0.6, body) == pytest.approx(0.8)


def test_cascade_never_exceeds_max_attempts_and_keeps_best_answer() -> None:
    calls: list[str] = []

    async def call(model: str) -> CallResult:
        calls.append(model)
        if model == "mid":
            return CallResult(False, 1.0, error="HTTP 500", kind="http_500")
        return CallResult(True, 1.0, body={**OK, "usage": {**OK["usage"], "cost": 0.25}})

    res = asyncio.run(run_cascade(_decision(CANDS, "cheap"), "p", call, {}, threshold=0.95, max_attempts=3))
    assert calls == ["cheap", "mid", "top"]
    assert res.final_model == "top" and res.total_cost_usd == pytest.approx(0.5)
    assert [a.escalated_because for a in res.attempts] == ["confidence 0.500 < 0.950", "http_500", None]
    res = asyncio.run(run_cascade(_decision(CANDS, "cheap"), "p", call, {}, threshold=0.95, max_attempts=2))
    assert res.final_model == "cheap" and len(res.attempts) == 2


def test_open_stream_reads_events_and_falls_back_to_a_whole_answer() -> None:
    from llmroute.providers.chat import OpenStream, StreamBroken

    sse = (
        'data: {"choices": [{"delta": {"content": "he"}}]}\n\n: keep-alive\n\n'
        'data: {"choices": [{"delta": {"content": "llo"}}]}\n\ndata: [DONE]\n\n'
    )
    bodies: dict[str, httpx.Response] = {
        "sse": httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"}),
        "json": httpx.Response(200, json=OK),  # a provider that ignores stream: true
        "err": httpx.Response(200, text='data: {"error": {"message": "overloaded"}}\n\n',
                              headers={"content-type": "text/event-stream"}),
        "cut": httpx.Response(200, text='data: {"choices": []}\n\n', headers={"content-type": "text/event-stream"}),
    }
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return bodies[request.url.host]

    async def go(host: str) -> tuple[Any, list[Any], str | None]:
        provider, http = _provider(handler)
        async with http:
            opened = await provider.open_stream(Endpoint("m", f"http://{host}/v1"), {"messages": []})
            if not isinstance(opened, OpenStream):
                return opened, [], None
            events: list[Any] = []
            try:
                async for e in opened.events():
                    events.append(e)
            except StreamBroken as exc:
                return opened, events, exc.kind
            finally:
                await opened.aclose()
            return opened, events, None

    opened, events, broken = asyncio.run(go("sse"))
    assert isinstance(opened, OpenStream) and broken is None
    assert [e["choices"][0]["delta"]["content"] for e in events] == ["he", "llo"]
    assert sent[0]["stream"] is True and sent[0]["stream_options"] == {"include_usage": True}
    whole, _, _ = asyncio.run(go("json"))
    assert isinstance(whole, CallResult) and whole.ok and whole.body == OK
    assert asyncio.run(go("err"))[2] == "provider_error"
    assert asyncio.run(go("cut"))[2] == "broken"  # ended without data: [DONE]
