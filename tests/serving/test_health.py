"""Circuit breakers and rate limits (serving.health) on a fake clock, and the dispatcher's last gate."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import httpx
import pytest

from llmroute.providers.chat import ChatProvider
from llmroute.serving.dispatch import Dispatcher
from llmroute.serving.health import BreakerConfig, CircuitBreaker, ProviderHealth, TokenBucket, counts_as_failure
from llmroute.serving.metrics import ServiceMetrics
from llmroute.serving.settings import ServeSettings
from tests.router.helpers import make_spec


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _health(**kw: Any) -> tuple[ProviderHealth, Clock]:
    clock = Clock()
    return ProviderHealth(BreakerConfig(**kw), clock), clock


SPECS = {"m": make_spec("m"), "n": make_spec("n")}


def test_failure_kinds() -> None:
    assert counts_as_failure(None) is False
    for kind in ("timeout", "connect", "bad_response", "http_429", "http_500", "http_503"):
        assert counts_as_failure(kind) is True
    for kind in ("http_400", "http_404", "no_endpoint", "data_policy", "circuit_open", "rate_limited", "cancelled"):
        assert counts_as_failure(kind) is None


def test_consecutive_failures_open_then_half_open_probe_closes() -> None:
    h, clock = _health(failure_threshold=3, cooldown_s=10.0)
    for _ in range(2):
        assert h.admit("m", SPECS["m"], 10) == (None, None)
        assert not h.record("m", "timeout")
    h.record("m", None)  # a success resets the run
    for i in range(3):
        assert h.admit("m", SPECS["m"], 10) == (None, None)
        assert h.record("m", "http_500") is (i == 2)
    down = h.unavailable(SPECS)
    assert list(down) == ["m"] and "circuit breaker open (3 consecutive failures); half-open in 10.0 s" in down["m"]
    kind, why = h.admit("m", SPECS["m"], 10)
    assert kind == "circuit_open" and why is not None
    clock.t += 10.0
    assert h.states(["m", "n"]) == {"m": "half_open", "n": "closed"}
    assert h.unavailable(SPECS) == {}
    assert h.admit("m", SPECS["m"], 10) == (None, None)  # the probe
    assert "a probe call is in flight" in h.unavailable(SPECS)["m"]
    assert h.admit("m", SPECS["m"], 10)[0] == "circuit_open"  # one probe at a time
    h.record("m", None)
    assert h.states(["m"]) == {"m": "closed"} and h.unavailable(SPECS) == {}


def test_failed_probe_reopens_and_lost_probe_frees_its_slot() -> None:
    h, clock = _health(failure_threshold=1, cooldown_s=5.0, probe_ttl_s=20.0)
    h.admit("m", SPECS["m"], 1)
    assert h.record("m", "connect")
    clock.t += 5.0
    h.admit("m", SPECS["m"], 1)
    assert h.record("m", "timeout")  # the probe failed: open again for a cooldown
    assert h.states(["m"])["m"] == "open"
    clock.t += 5.0
    assert h.admit("m", SPECS["m"], 1) == (None, None)  # a probe that never reports back ...
    clock.t += 20.0
    assert h.admit("m", SPECS["m"], 1) == (None, None)  # ... frees the slot after probe_ttl_s
    h.record("m", "cancelled")  # neither success nor failure: the slot is free again, still half-open
    assert h.states(["m"])["m"] == "half_open" and "m" not in h.unavailable(SPECS)


def test_error_rate_over_the_window_opens() -> None:
    h, clock = _health(failure_threshold=100, min_calls=10, error_rate=0.5, window_s=60.0)
    for i in range(9):
        h.record("m", "timeout" if i % 2 == 0 else None)  # 5 of 9 failed: too few calls yet
        clock.t += 1.0
    assert h.states(["m"])["m"] == "closed"
    assert h.record("m", None) is True  # the tenth call: 5 of 10 failed, rate 0.5 >= 0.5
    assert "5 of the last 10 calls failed within 60 s" in h.unavailable(SPECS)["m"]
    h2, clock2 = _health(failure_threshold=100, min_calls=4, error_rate=0.5, window_s=5.0)
    for _ in range(3):
        h2.record("m", "timeout")
    clock2.t += 10.0  # those three leave the window: 4 of 7 failed in all, 1 of 4 within the window
    for kind in ("timeout", None, None, None):
        assert h2.record("m", kind) is False
    assert h2.states(["m"])["m"] == "closed"


def test_the_window_failure_count_follows_the_calls_in_the_window() -> None:
    """The breaker keeps its window's failure count as calls come and leave (no walk over the window per
    call): at every call it equals a count over the calls still in the window, through trips and closes."""
    rng = random.Random(7)
    breaker = CircuitBreaker(BreakerConfig(failure_threshold=4, min_calls=15, error_rate=0.6, window_s=3.0,
                                           cooldown_s=0.5))
    now, trips = 0.0, 0
    for _ in range(5000):
        now += rng.expovariate(40.0)
        if breaker.admit(now) is not None:
            continue
        trips += breaker.record(rng.random() < (0.7 if (now // 20) % 2 else 0.1), now)
        assert breaker.failures == sum(1 for _, failed in breaker.calls if failed)
    assert trips >= 3 and breaker.trips == trips  # the count went through opens and closes


def test_error_rate_exact() -> None:
    h, _ = _health(failure_threshold=100, min_calls=4, error_rate=0.75)
    for kind in ("timeout", None, "timeout"):
        assert not h.record("m", kind)
    assert h.record("m", "timeout")  # 3 of 4
    assert "3 of the last 4 calls failed" in h.unavailable(SPECS)["m"]


def test_four_hundreds_count_as_nothing() -> None:
    h, _ = _health(failure_threshold=2)
    for _ in range(5):
        h.record("m", "http_400")
    assert h.states(["m"])["m"] == "closed"


def test_token_bucket() -> None:
    b = TokenBucket(60, now=0.0)  # 1 a second
    assert all(b.take(1, 0.0) for _ in range(60)) and not b.take(1, 0.0)
    assert b.wait_s(1, 0.0) == pytest.approx(1.0)
    assert b.take(1, 1.0) and not b.take(1, 1.0)
    assert b.available(1000.0) == 60  # never more than a minute's worth
    b.charge(100, 1000.0)
    assert b.available(1000.0) == -40  # in debt after an answer longer than estimated
    assert b.take(500, 2000.0)  # a single take larger than the capacity passes from a full bucket


def test_rate_limits_make_a_model_unavailable_and_refuse_calls() -> None:
    h, clock = _health()
    specs = {"m": dataclasses.replace(SPECS["m"], rate_limit_rpm=2, rate_limit_tpm=1000)}
    assert h.admit("m", specs["m"], 100) == (None, None)
    assert h.admit("m", specs["m"], 100) == (None, None)
    assert "rate limit of 2 requests/min reached" in h.unavailable(specs)["m"]
    kind, why = h.admit("m", specs["m"], 100)
    assert kind == "rate_limited" and "2 requests/min" in (why or "")
    clock.t += 30.0  # one request back
    assert h.unavailable(specs) == {}
    h.record("m", None, extra_tokens=2000)  # the answer used far more tokens than estimated
    assert "rate limit of 1000 tokens/min reached" in h.unavailable(specs)["m"]
    snap = h.snapshot(specs)["m"]
    assert snap["available"] is False and snap["rate_limit"]["requests_per_min"] == 2
    assert snap["rate_limit"]["refused"] == 1 and snap["breaker"]["state"] == "closed"


def test_dispatcher_refuses_non_local_models_under_local_only_without_calling() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read().decode())
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "ok"}}]})

    specs = {"loc": make_spec("loc", local=True), "api": make_spec("api"), "x": None}
    metrics = ServiceMetrics.create()

    async def go(policy: str, model: str) -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            settings = ServeSettings(default_base_url="http://p/v1")
            d = Dispatcher(ChatProvider(http, settings.provider_client_config()), settings, specs, ProviderHealth(), metrics, policy,
                           "secret prompt", {"messages": [{"role": "user", "content": "secret prompt"}]})
            return await d.call(model), await d.open_stream(model)

    for model in ("api", "x"):
        res, stream = asyncio.run(go("local_only", model))
        assert not res.ok and res.kind == "data_policy" and res.tries == 0
        assert not stream.ok and stream.kind == "data_policy"
        assert "local_only" in (res.error or "")
    assert seen == []
    assert metrics.data_policy_blocked.labels("api")._value.get() == 2
    res, _ = asyncio.run(go("local_only", "loc"))
    assert res.ok and len(seen) == 2
    res, _ = asyncio.run(go("prefer_local", "api"))
    assert res.ok


def test_dispatcher_skips_open_breakers_and_reports_outcomes() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise httpx.ConnectError("down", request=request)

    health, _ = _health(failure_threshold=2)
    metrics = ServiceMetrics.create()

    async def go() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            settings = ServeSettings(default_base_url="http://p/v1", provider_retries=0)
            d = Dispatcher(ChatProvider(http, settings.provider_client_config()), settings, SPECS, health, metrics, "any", "hi", {"messages": []})
            return [await d.call("m") for _ in range(4)]

    out = asyncio.run(go())
    assert [r.kind for r in out] == ["connect", "connect", "circuit_open", "circuit_open"]
    assert calls["n"] == 2 and metrics.breaker_trips.labels("m")._value.get() == 1
