"""Calls to OpenAI-compatible chat completion endpoints, with retries and exponential backoff.

:meth:`ChatProvider.complete` reads a whole answer; :meth:`ChatProvider.open_stream` asks for a
streamed one (``stream: true`` with ``stream_options.include_usage``) and returns it as soon as the
provider has answered with ``200 text/event-stream`` (an :class:`OpenStream`, read with
:meth:`OpenStream.events`). Both retry the same failures (429/5xx, connection errors) the same way,
and only *before* an answer starts: once a stream has started, a broken stream is an error of that
stream (:class:`StreamBroken`). A provider that ignores ``stream`` and answers with JSON is read as a
whole answer.

API keys are read from the environment variable the catalog names (``api_key_env``) at call time,
sent only in the ``Authorization`` header, and never logged or returned. A provider's error text is
never returned or stored either: results carry the status and a generic reason
(:mod:`llmroute.providers.errors`), and the provider's words go to the log with secrets masked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmroute.data.catalog import ModelSpec
from llmroute.providers.config import ProviderClientConfig
from llmroute.providers.errors import client_reason, is_config_error, mask_secrets
from llmroute.providers.http import (
    ProviderConnectionError,
    ProviderHTTP,
    ProviderResponse,
    ProviderTimeout,
    Timeouts,
    as_provider_http,
)

log = logging.getLogger("llmroute.providers.chat")

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
    # (serving.dispatch adds calls never made: data_policy | circuit_open | rate_limited, with tries 0)

    @property
    def config_error(self) -> bool:
        """The provider refused our credentials (401/403): retrying or escalating to a model behind the
        same credentials cannot help."""
        return is_config_error(self.status)
    tries: int = 1


class StreamBroken(RuntimeError):
    """A started stream could not be read to its end; ``kind``: timeout | broken | bad_response | provider_error."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class OpenStream:
    """A provider's answer being streamed: the open HTTP response and how long it took to start."""

    model: str
    response: ProviderResponse = field(repr=False)
    started_ms: float  # from the first try to the response headers, retries included
    tries: int
    t0: float  # perf_counter() when the call began

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The stream's ``data:`` events as dicts, up to ``[DONE]``; raises :class:`StreamBroken` when
        the stream breaks, times out, carries an error or something that is not JSON, or ends early."""
        try:
            async for line in self.response.lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (": ping"), event:/id: fields
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise StreamBroken("a stream event is not JSON", "bad_response") from exc
                if not isinstance(event, dict):
                    raise StreamBroken("a stream event is not a JSON object", "bad_response")
                if "error" in event:
                    err = event["error"]
                    msg = err.get("message", err) if isinstance(err, dict) else err
                    log.warning("provider error in the stream of %s: %s", self.model, mask_secrets(str(msg)[:500]))
                    raise StreamBroken("the provider reported an error in the stream", "provider_error")
                yield event
        except ProviderTimeout as exc:
            raise StreamBroken(str(exc), "timeout") from exc
        except ProviderConnectionError as exc:
            raise StreamBroken(str(exc), "broken") from exc
        raise StreamBroken("stream ended before data: [DONE]", "broken")

    async def aclose(self) -> None:
        await self.response.aclose()


def resolve_endpoint(model: str, spec: ModelSpec | None, config: ProviderClientConfig) -> Endpoint:
    """Base URL: the per-model override, else the catalog's endpoint, else the default base URL."""
    base = config.base_urls.get(model)
    if base is None and spec is not None:
        base = spec.endpoint
    if base is None:
        base = config.default_base_url
    key = os.environ.get(spec.api_key_env) if spec is not None and spec.api_key_env else None
    return Endpoint(model, base.rstrip("/") if base else None, key or None)


def no_endpoint_message(model: str) -> str:
    """What a call to a model without an endpoint says: how to give it one."""
    return (
        f"no endpoint configured for {model}: give `llmroute serve --default-base-url URL` (e.g. a "
        f"`llmroute replay-server`'s http://127.0.0.1:9000/v1), `--base-url {model}=URL`, or the catalog's endpoint"
    )


def missing_endpoints(
    models: list[str] | tuple[str, ...], specs: Mapping[str, ModelSpec | None], config: ProviderClientConfig
) -> list[str]:
    """The models a chat request could not call (no per-model URL, catalog endpoint or default URL)."""
    return [m for m in models if resolve_endpoint(m, specs.get(m), config).base_url is None]


class ChatProvider:
    """``POST {base_url}/chat/completions`` on a shared client (:mod:`llmroute.providers.http`;
    an ``httpx.AsyncClient`` is taken as it is), with the timeouts and retries of ``config``."""

    def __init__(self, http: ProviderHTTP | httpx.AsyncClient, config: ProviderClientConfig) -> None:
        self.http = as_provider_http(http)
        self.config = config
        self.timeouts = Timeouts(config.timeout_s, config.connect_timeout_s)
        self.retries = config.retries
        self.backoff = config.backoff_s

    async def complete(self, endpoint: Endpoint, payload: dict[str, Any]) -> CallResult:
        """One model call: retried on 429/5xx and connection errors, not on timeouts (the cascade
        escalates instead of waiting again)."""
        t0 = time.perf_counter()
        if endpoint.base_url is None:
            return CallResult(False, 0.0, error=no_endpoint_message(endpoint.model), kind="no_endpoint")
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        body = json.dumps({**payload, "model": endpoint.model, "stream": False}).encode()  # once, not per try
        result: CallResult | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            once = await self._once(endpoint, body, headers, t0, attempt + 1)
            assert isinstance(once, CallResult)  # without stream=True there is no OpenStream
            result = once
            if result.ok or result.kind not in {"connect", *(f"http_{s}" for s in RETRY_STATUSES)}:
                return result
        assert result is not None
        return result

    async def open_stream(self, endpoint: Endpoint, payload: dict[str, Any]) -> CallResult | OpenStream:
        """Ask for a streamed answer: an :class:`OpenStream` once the provider answers 200 with an event
        stream (the caller must ``aclose`` it), else the failed :class:`CallResult` after the retries
        of :meth:`complete` (or a whole answer, when the provider ignored ``stream``)."""
        t0 = time.perf_counter()
        if endpoint.base_url is None:
            return CallResult(False, 0.0, error=no_endpoint_message(endpoint.model), kind="no_endpoint")
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        body = json.dumps(
            {**payload, "model": endpoint.model, "stream": True, "stream_options": {"include_usage": True}}
        ).encode()
        result: CallResult | OpenStream | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            result = await self._once(endpoint, body, headers, t0, attempt + 1, stream=True)
            if isinstance(result, OpenStream) or result.ok or result.kind not in {
                "connect", *(f"http_{s}" for s in RETRY_STATUSES)
            }:
                return result
        assert result is not None
        return result

    async def _once(
        self, endpoint: Endpoint, body: bytes, headers: dict[str, str], t0: float, tries: int, stream: bool = False,
    ) -> CallResult | OpenStream:
        url = f"{endpoint.base_url}/chat/completions"

        def ms() -> float:
            return (time.perf_counter() - t0) * 1000.0

        try:
            resp = await self.http.post(url, body, headers, self.timeouts)
            if stream and resp.status == 200 and resp.content_type.startswith("text/event-stream"):
                return OpenStream(endpoint.model, resp, ms(), tries, t0)
            raw = await resp.read()
        except ProviderTimeout as exc:
            return CallResult(False, ms(), error=str(exc), kind="timeout", tries=tries)
        except ProviderConnectionError as exc:
            return CallResult(False, ms(), error=str(exc), kind="connect", tries=tries)
        if resp.status != 200:
            detail = mask_secrets(_error_text(raw), (endpoint.api_key,))
            if is_config_error(resp.status):
                log.error("CONFIGURATION ERROR: %s refused this service's credentials for %s (HTTP %d): %s",
                          endpoint.base_url, endpoint.model, resp.status, detail)
            else:
                log.warning("%s answered HTTP %d for %s: %s", endpoint.base_url, resp.status, endpoint.model, detail)
            return CallResult(
                False, ms(), status=resp.status, error=client_reason(resp.status),
                kind=f"http_{resp.status}", tries=tries,
            )
        try:
            data = json.loads(raw)
            content_text = data["choices"][0]["message"]["content"]
            if not isinstance(content_text, str):
                raise TypeError("message.content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("%s answered %s with something that is not a chat completion: %s", endpoint.base_url,
                        endpoint.model, mask_secrets(str(exc)[:300], (endpoint.api_key,)))
            return CallResult(
                False, ms(), status=200, error="the provider's answer is not a chat completion", kind="bad_response",
                tries=tries,
            )
        return CallResult(True, ms(), body=data, status=200, tries=tries)


def _error_text(raw: bytes) -> str:
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return str(data["error"].get("message", ""))[:300]
    except ValueError:
        pass
    return raw[:300].decode("utf-8", "replace")
