"""Calls to OpenAI-compatible chat completion endpoints, with retries and exponential backoff.

API keys are read from the environment variable the catalog names (``api_key_env``) at call time,
sent only in the ``Authorization`` header, and never logged or returned.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmroute.data.catalog import ModelSpec
from llmroute.serving.settings import ServeSettings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call one model."""

    model: str
    base_url: str | None
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CallResult:
    ok: bool
    latency_ms: float
    body: dict[str, Any] | None = None
    status: int | None = None
    error: str | None = None
    kind: str | None = None  # timeout | http_<status> | connect | bad_response | no_endpoint
    tries: int = 1


def resolve_endpoint(model: str, spec: ModelSpec | None, settings: ServeSettings) -> Endpoint:
    """Base URL: the per-model override, else the catalog's endpoint, else the default base URL."""
    base = settings.provider_base_urls.get(model)
    if base is None and spec is not None:
        base = spec.endpoint
    if base is None:
        base = settings.default_base_url
    key = os.environ.get(spec.api_key_env) if spec is not None and spec.api_key_env else None
    return Endpoint(model, base.rstrip("/") if base else None, key or None)


class ChatProvider:
    """``POST {base_url}/chat/completions`` on a shared ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, settings: ServeSettings) -> None:
        self.http = http
        self.timeout = httpx.Timeout(settings.provider_timeout_s, connect=settings.provider_connect_timeout_s)
        self.retries = settings.provider_retries
        self.backoff = settings.retry_backoff_s

    async def complete(self, endpoint: Endpoint, payload: dict[str, Any]) -> CallResult:
        """One model call: retried on 429/5xx and connection errors, not on timeouts (the cascade
        escalates instead of waiting again)."""
        t0 = time.perf_counter()
        if endpoint.base_url is None:
            return CallResult(False, 0.0, error=f"no endpoint configured for {endpoint.model}", kind="no_endpoint")
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        body = {**payload, "model": endpoint.model, "stream": False}
        result: CallResult | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            result = await self._once(endpoint, body, headers, t0, attempt + 1)
            if result.ok or result.kind not in {"connect", *(f"http_{s}" for s in RETRY_STATUSES)}:
                return result
        assert result is not None
        return result

    async def _once(
        self, endpoint: Endpoint, body: dict[str, Any], headers: dict[str, str], t0: float, tries: int
    ) -> CallResult:
        url = f"{endpoint.base_url}/chat/completions"

        def ms() -> float:
            return (time.perf_counter() - t0) * 1000.0

        try:
            resp = await self.http.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            return CallResult(False, ms(), error=f"timed out ({type(exc).__name__})", kind="timeout", tries=tries)
        except httpx.TransportError as exc:
            return CallResult(False, ms(), error=f"connection error ({type(exc).__name__})", kind="connect", tries=tries)
        if resp.status_code != 200:
            return CallResult(
                False, ms(), status=resp.status_code, error=f"HTTP {resp.status_code}: {_error_text(resp)}",
                kind=f"http_{resp.status_code}", tries=tries,
            )
        try:
            data = resp.json()
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("message.content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return CallResult(
                False, ms(), status=200, error=f"not a chat completion ({exc})", kind="bad_response", tries=tries
            )
        return CallResult(True, ms(), body=data, status=200, tries=tries)


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return str(data["error"].get("message", ""))[:300]
    except ValueError:
        pass
    return resp.text[:300]
