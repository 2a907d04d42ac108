"""Pure ASGI middleware: request body size limit and request metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmroute.serving.errors import error_body

log = logging.getLogger("llmroute.serving")

KNOWN_ENDPOINTS = frozenset(
    {"/route", "/v1/chat/completions", "/models", "/health", "/ready", "/admin/reload", "/metrics", "/feedback",
     "/docs", "/redoc", "/openapi.json"}
)


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
    })
    await send({"type": "http.response.body", "body": data})


class BodySizeLimit:
    """Answer 413 to bodies over ``max_bytes`` (by Content-Length, or while reading a chunked body).

    The body is read up front (at most ``max_bytes``) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = error_body("request_too_large", f"request body exceeds {self.max_bytes} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_json(send, 413, too_big)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class CatchAll:
    """The outermost guard: an unexpected exception becomes a JSON 500 (with an error id; the stack trace
    goes to the log) and is not re-raised, so the server keeps the client's keep-alive connection. An
    exception after the response started (a stream broken midway) is re-raised: that connection must close."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if started:
                raise
            error_id = uuid.uuid4().hex
            log.exception("unhandled error %s on %s %s", error_id, scope.get("method"), scope.get("path"))
            await _send_json(send, 500, error_body("internal_error", f"internal error (id {error_id}); see the service log"))


LOGGING_HEADER = b"x-llmroute-logging"


class LoggingHealthHeader:
    """Add ``X-LLMRoute-Logging: degraded`` to every response while the decision log's database or spool
    disk refuses writes (records are kept and replayed; the header tells clients and operators)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = scope.get("state", {}).get("services") if scope["type"] == "http" else None
        log = getattr(services, "decision_log", None)
        if log is None or log.degraded_reason() is None:
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (LOGGING_HEADER, b"degraded")]}
            await send(message)

        await self.app(scope, receive, send_wrapper)


class RequestMetrics:
    """Count requests and time them per endpoint (unknown paths are labelled 'other')."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = scope.get("state", {}).get("services")
        if services is None:
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in KNOWN_ENDPOINTS else "other"
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            services.metrics.requests.labels(endpoint, str(status)).inc()
            services.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)
