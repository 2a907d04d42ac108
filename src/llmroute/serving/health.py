"""Provider health: a circuit breaker per model endpoint and per-model rate limits (one service process).

**Circuit breaker** (:class:`CircuitBreaker`), one per model (each model is called at one endpoint, its
resolved base URL). *Closed*: calls go through. It *opens* after ``failure_threshold`` consecutive
failed calls, or when at least ``min_calls`` calls of the last ``window_s`` seconds ended and at
least ``error_rate`` of them failed. *Open* for ``cooldown_s``: the model is unavailable. Then
*half-open*: one call at a time goes through as a probe (a probe that has not reported back within
``probe_ttl_s`` -- a cancelled request -- frees the slot); its success closes the breaker (the
counts restart), its failure opens it for another cooldown. A failed call is one that timed out,
could not connect, got HTTP 429 or 5xx, or got something that is not a chat completion; a 4xx other
than 429 says more about the request than the provider and counts as neither success nor failure.

**Rate limits** (:class:`RateLimit`), from the catalog's ``rate_limit_rpm`` / ``rate_limit_tpm``: two
token buckets per model, holding at most one minute's allowance and refilled continuously. A call
takes one request and its estimated tokens (about a token per 4 prompt characters + the request's
``max_tokens``, if given)
before it is made; afterwards the tokens the provider reports are charged for the difference, so a
long answer may leave the bucket in debt. A model whose request bucket has less than one request or
whose token bucket is empty is *saturated*. The buckets are per process: with N worker processes the
provider sees up to N times the limit (share the limit out, ``rpm / N``, in a catalog for the deployment).

:class:`ProviderHealth` holds both for every model. The router asks it which models are unavailable
right now (:meth:`ProviderHealth.unavailable`: open breakers, half-open ones whose probe is out,
saturated limits, each with a reason), and treats those as ineligible for the request, so traffic
goes to the next best model at once instead of waiting for a timeout. Every call is admitted first
(:meth:`ProviderHealth.admit`, which may still refuse when another request took the last slot in the
meantime) and reports its outcome (:meth:`ProviderHealth.record`). Thread-safe (one lock).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmroute.data.catalog import ModelSpec
from llmroute.serving.settings import ServeSettings

FAILURE_KINDS = frozenset({"timeout", "connect", "bad_response", "http_429"})


def counts_as_failure(kind: str | None) -> bool | None:
    """True for a provider failure, False for a success (``kind`` None), None for neither (a 4xx
    other than 429, a call never made: no endpoint, refused by policy, breaker or rate limit)."""
    if kind is None:
        return False
    if kind in FAILURE_KINDS or (kind.startswith("http_5") and len(kind) == 8):
        return True
    return None


@dataclass(frozen=True)
class BreakerConfig:
    """When a breaker opens and for how long (see module docstring)."""

    failure_threshold: int = 10
    window_s: float = 60.0
    min_calls: int = 20
    error_rate: float = 0.5
    cooldown_s: float = 30.0
    probe_ttl_s: float = 60.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.min_calls < 1:
            raise ValueError("breaker failure_threshold and min_calls must be at least 1")
        if not 0.0 < self.error_rate <= 1.0:
            raise ValueError(f"breaker error_rate must be in (0, 1], got {self.error_rate}")
        if self.window_s <= 0 or self.cooldown_s < 0 or self.probe_ttl_s <= 0:
            raise ValueError("breaker window_s and probe_ttl_s must be positive and cooldown_s not negative")


def breaker_config(settings: ServeSettings) -> BreakerConfig:
    """The breaker settings of the service; a half-open probe's slot is held for as long as one call
    with all its retries can take."""
    return BreakerConfig(
        failure_threshold=settings.breaker_failure_threshold, window_s=settings.breaker_window_s,
        min_calls=settings.breaker_min_calls, error_rate=settings.breaker_error_rate,
        cooldown_s=settings.breaker_cooldown_s,
        probe_ttl_s=settings.provider_timeout_s * (settings.provider_retries + 1)
        + settings.retry_backoff_s * 2 ** settings.provider_retries + 5.0,
    )


class CircuitBreaker:
    """The breaker of one endpoint; not thread-safe by itself (:class:`ProviderHealth` locks)."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.consecutive = 0
        self.calls: deque[tuple[float, bool]] = deque()  # (time, failed) of the last window_s
        self.failures = 0  # failed calls in ``calls``, kept as calls come and go (no walk over the window)
        self.opened_at: float | None = None  # None = closed
        self.probe_since: float | None = None  # a half-open probe in flight since
        self.opened_because = ""
        self.trips = 0

    def state(self, now: float) -> str:
        """'closed', 'open' or 'half_open'."""
        if self.opened_at is None:
            return "closed"
        return "open" if now < self.opened_at + self.config.cooldown_s else "half_open"

    def probe_out(self, now: float) -> bool:
        return self.probe_since is not None and now < self.probe_since + self.config.probe_ttl_s

    def blocked(self, now: float) -> str | None:
        """Why a call cannot go through now (None: it can)."""
        state = self.state(now)
        if state == "open":
            assert self.opened_at is not None
            left = self.opened_at + self.config.cooldown_s - now
            return f"circuit breaker open ({self.opened_because}); half-open in {left:.1f} s"
        if state == "half_open" and self.probe_out(now):
            return f"circuit breaker half-open ({self.opened_because}); a probe call is in flight"
        return None

    def admit(self, now: float) -> str | None:
        """Take the slot for a call (the probe slot when half-open); the reason when refused."""
        why = self.blocked(now)
        if why is None and self.state(now) == "half_open":
            self.probe_since = now
        return why

    def record(self, failed: bool, now: float) -> bool:
        """Count one call's outcome; True when this outcome opened the breaker."""
        cfg = self.config
        if self.opened_at is not None:  # a half-open probe (or a straggler from before it opened)
            if self.state(now) == "open":
                return False
            self.probe_since = None
            if failed:
                self._open(now, "the half-open probe failed")
                return True
            self._close()
            return False
        self.calls.append((now, failed))
        self.failures += failed
        while self.calls and self.calls[0][0] < now - cfg.window_s:
            self.failures -= self.calls.popleft()[1]
        self.consecutive = self.consecutive + 1 if failed else 0
        if self.consecutive >= cfg.failure_threshold:
            self._open(now, f"{self.consecutive} consecutive failures")
            return True
        n = len(self.calls)
        bad = self.failures
        if n >= cfg.min_calls and bad / n >= cfg.error_rate:
            self._open(now, f"{bad} of the last {n} calls failed within {cfg.window_s:g} s")
            return True
        return False

    def _open(self, now: float, because: str) -> None:
        self.opened_at, self.opened_because, self.probe_since = now, because, None
        self.trips += 1

    def _close(self) -> None:
        self.opened_at, self.opened_because, self.consecutive = None, "", 0
        self.calls.clear()
        self.failures = 0

    def summary(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        n = len([1 for t, _ in self.calls if t >= now - self.config.window_s])
        bad = sum(1 for t, f in self.calls if f and t >= now - self.config.window_s)
        out: dict[str, Any] = {
            "state": state, "consecutive_failures": self.consecutive, "window_calls": n, "window_failures": bad,
            "trips": self.trips,
        }
        if state != "closed":
            assert self.opened_at is not None
            out["opened_because"] = self.opened_because
            out["half_open_in_s"] = round(max(0.0, self.opened_at + self.config.cooldown_s - now), 3)
        return out


class TokenBucket:
    """``capacity`` units, refilled at ``capacity / 60`` per second (a per-minute allowance)."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = self.capacity / 60.0
        self.level = self.capacity
        self.t = now

    def _refill(self, now: float) -> None:
        if now > self.t:
            self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
            self.t = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.level

    def take(self, n: float, now: float) -> bool:
        """Take ``n`` units if there are (a single take larger than the capacity is allowed from a
        full bucket, so one huge prompt is slowed, not refused for ever)."""
        self._refill(now)
        if self.level >= min(n, self.capacity):
            self.level -= n
            return True
        return False

    def charge(self, n: float, now: float) -> None:
        """Take ``n`` more units after the fact (negative: give back); the level may go below zero."""
        self._refill(now)
        self.level = min(self.capacity, self.level - n)

    def wait_s(self, n: float, now: float) -> float:
        """Seconds until ``n`` units (at most the capacity) are available."""
        need = min(n, self.capacity) - self.available(now)
        return max(0.0, need / self.rate) if self.rate > 0 else math.inf


class RateLimit:
    """Requests and tokens per minute of one model (either may be None: not limited)."""

    def __init__(self, rpm: float | None, tpm: float | None, now: float) -> None:
        self.requests = TokenBucket(rpm, now) if rpm else None
        self.tokens = TokenBucket(tpm, now) if tpm else None
        self.limited = 0

    def saturated(self, now: float) -> str | None:
        if self.requests is not None and self.requests.available(now) < 1.0:
            return (f"rate limit of {self.requests.capacity:g} requests/min reached "
                    f"(next in {self.requests.wait_s(1.0, now):.1f} s)")
        if self.tokens is not None and self.tokens.available(now) <= 0.0:
            return (f"rate limit of {self.tokens.capacity:g} tokens/min reached "
                    f"(free again in {self.tokens.wait_s(1.0, now):.1f} s)")
        return None

    def take(self, tokens: float, now: float) -> str | None:
        if self.requests is not None and not self.requests.take(1.0, now):
            self.limited += 1
            return f"rate limit of {self.requests.capacity:g} requests/min reached"
        if self.tokens is not None and not self.tokens.take(tokens, now):
            if self.requests is not None:
                self.requests.charge(-1.0, now)
            self.limited += 1
            return f"rate limit of {self.tokens.capacity:g} tokens/min reached ({tokens:.0f} tokens asked)"
        return None


class ProviderHealth:
    """Breakers and rate limits of every model this process calls (see module docstring).

    ``clock``: seconds, monotonic (tests pass a fake one)."""

    def __init__(self, config: BreakerConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self.clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._limits: dict[str, RateLimit] = {}

    def _breaker(self, model: str) -> CircuitBreaker:
        b = self._breakers.get(model)
        if b is None:
            b = self._breakers[model] = CircuitBreaker(self.config)
        return b

    def _limit(self, model: str, spec: ModelSpec | None, now: float) -> RateLimit | None:
        if spec is None or (spec.rate_limit_rpm is None and spec.rate_limit_tpm is None):
            return None
        lim = self._limits.get(model)
        if lim is None:
            lim = self._limits[model] = RateLimit(spec.rate_limit_rpm, spec.rate_limit_tpm, now)
        return lim

    def unavailable(self, specs: Mapping[str, ModelSpec | None]) -> dict[str, str]:
        """model -> why it cannot take a call now, for the models of ``specs`` that cannot."""
        out: dict[str, str] = {}
        with self._lock:
            now = self.clock()
            for model, spec in specs.items():
                b = self._breakers.get(model)
                why = b.blocked(now) if b is not None else None
                if why is None:
                    lim = self._limit(model, spec, now)
                    why = lim.saturated(now) if lim is not None else None
                if why is not None:
                    out[model] = why
        return out

    def admit(self, model: str, spec: ModelSpec | None, tokens: float) -> tuple[str | None, str | None]:
        """Take a call slot for ``model``: (None, None) when admitted, else (kind, reason) with kind
        ``circuit_open`` or ``rate_limited``. A refused call must not be made (and not recorded)."""
        with self._lock:
            now = self.clock()
            why = self._breaker(model).admit(now)
            if why is not None:
                return "circuit_open", why
            lim = self._limit(model, spec, now)
            why = lim.take(tokens, now) if lim is not None else None
            if why is not None:
                b = self._breakers[model]
                if b.probe_since == now:
                    b.probe_since = None  # give the probe slot back: no call is made
                return "rate_limited", why
        return None, None

    def record(self, model: str, kind: str | None, extra_tokens: float = 0.0) -> bool:
        """Report the outcome of an admitted call (``kind`` None: it succeeded; see
        :func:`counts_as_failure`) and charge ``extra_tokens`` more (or fewer) to its token budget.
        True when this outcome opened the model's breaker."""
        failed = counts_as_failure(kind)
        with self._lock:
            now = self.clock()
            lim = self._limits.get(model)
            if lim is not None and lim.tokens is not None and extra_tokens:
                lim.tokens.charge(extra_tokens, now)
            b = self._breaker(model)
            if failed is None:
                if b.probe_since is not None:
                    b.probe_since = None  # the probe told nothing; let the next call probe
                return False
            return b.record(failed, now)

    def states(self, models: Iterable[str]) -> dict[str, str]:
        """model -> 'closed' | 'open' | 'half_open'."""
        with self._lock:
            now = self.clock()
            return {m: (self._breakers[m].state(now) if m in self._breakers else "closed") for m in models}

    def snapshot(self, specs: Mapping[str, ModelSpec | None]) -> dict[str, dict[str, Any]]:
        """Per model: ``available`` (and the reason when not), the breaker's state and counts, and the
        rate limits with what is left of them now."""
        down = self.unavailable(specs)
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            now = self.clock()
            for model, spec in specs.items():
                b = self._breakers.get(model)
                info: dict[str, Any] = {"available": model not in down}
                if model in down:
                    info["unavailable_because"] = down[model]
                info["breaker"] = b.summary(now) if b is not None else {"state": "closed", "trips": 0}
                lim = self._limit(model, spec, now)
                if lim is not None:
                    info["rate_limit"] = {
                        "requests_per_min": lim.requests.capacity if lim.requests else None,
                        "requests_left": round(lim.requests.available(now), 2) if lim.requests else None,
                        "tokens_per_min": lim.tokens.capacity if lim.tokens else None,
                        "tokens_left": round(lim.tokens.available(now), 1) if lim.tokens else None,
                        "refused": lim.limited,
                    }
                out[model] = info
        return out
