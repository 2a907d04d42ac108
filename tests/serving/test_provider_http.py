"""Provider calls through both HTTP clients (aiohttp, httpx) against a real local server: same answers,
same failures (HTTP errors, timeouts, refused connections, broken and complete streams)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from llmroute.providers.chat import (
    CallResult,
    ChatProvider,
    Endpoint,
    OpenStream,
    StreamBroken,
)
from llmroute.providers.errors import client_reason
from llmroute.providers.http import HTTP_CLIENTS, make_provider_http
from llmroute.serving.settings import ServeSettings
from tests.serving.servers import LiveServer

OK = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}], "usage": {"prompt_tokens": 3}}


def _app() -> FastAPI:
    app = FastAPI()
    seen: list[dict[str, Any]] = []
    app.state.seen = seen

    @app.post("/{kind}/v1/chat/completions")
    async def chat(kind: str, request: Request) -> Response:
        body = json.loads(await request.body())
        seen.append({"kind": kind, "body": body, "auth": request.headers.get("authorization"),
                     "type": request.headers.get("content-type")})
        if kind == "ok":
            return JSONResponse(OK)
        if kind == "fail":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if kind == "slow":
            await asyncio.sleep(3)
            return JSONResponse(OK)
        if kind == "bad":
            return Response(b"not json", media_type="application/json")

        async def events() -> AsyncIterator[bytes]:
            yield b'data: {"choices": [{"delta": {"content": "he"}}]}\r\n\r\n'
            yield b'data: {"choices": [{"delta": {"content": "llo"}}]}\n\n: ping\n\n'
            if kind == "broken":
                raise RuntimeError("cut")  # uvicorn closes the connection without the chunked terminator
            if kind == "stall":
                await asyncio.sleep(3)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    s = LiveServer(_app()).start()
    yield s
    s.stop()


def _run(client: str, fn: Any) -> Any:
    async def go() -> Any:
        http = make_provider_http(client)
        try:
            settings = ServeSettings(provider_retries=1, retry_backoff_s=0.001, provider_timeout_s=0.5)
            return await fn(ChatProvider(http, settings.provider_client_config()))
        finally:
            await http.aclose()

    return asyncio.run(go())


@pytest.fixture(params=sorted(HTTP_CLIENTS))
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_answer_body_headers_and_key(server: LiveServer, client: str) -> None:
    res: CallResult = _run(client, lambda p: p.complete(Endpoint("m", f"{server.url}/ok/v1", "sk-x"), {"messages": []}))
    assert res.ok and res.body == OK and res.tries == 1 and res.status == 200
    seen = server.server.config.app.state.seen[-1]
    assert seen["body"] == {"messages": [], "model": "m", "stream": False}
    assert seen["auth"] == "Bearer sk-x" and seen["type"] == "application/json"


def test_http_error_is_retried_and_reported(server: LiveServer, client: str) -> None:
    res: CallResult = _run(client, lambda p: p.complete(Endpoint("m", f"{server.url}/fail/v1"), {}))
    assert not res.ok and res.kind == "http_503" and res.tries == 2 and res.error == client_reason(503)


def test_timeout_refused_connection_and_bad_json(server: LiveServer, client: str) -> None:
    res: CallResult = _run(client, lambda p: p.complete(Endpoint("m", f"{server.url}/slow/v1"), {}))
    assert res.kind == "timeout" and res.tries == 1 and res.latency_ms < 2500
    res = _run(client, lambda p: p.complete(Endpoint("m", "http://127.0.0.1:9/v1"), {}))
    assert res.kind == "connect" and res.tries == 2
    res = _run(client, lambda p: p.complete(Endpoint("m", f"{server.url}/bad/v1"), {}))
    assert res.kind == "bad_response"


async def _read_stream(p: ChatProvider, url: str, late_s: float = 0.0) -> tuple[list[str], str | None]:
    opened = await p.open_stream(Endpoint("m", url), {"messages": []})
    assert isinstance(opened, OpenStream), opened
    await asyncio.sleep(late_s)  # > 0: the whole stream (and a break) has arrived before the first read
    texts: list[str] = []
    try:
        async for event in opened.events():
            texts.append(event["choices"][0]["delta"]["content"])
    except StreamBroken as exc:
        return texts, exc.kind
    finally:
        await opened.aclose()
    return texts, None


def test_streams_whole_broken_and_stalled(server: LiveServer, client: str) -> None:
    assert _run(client, lambda p: _read_stream(p, f"{server.url}/stream/v1")) == (["he", "llo"], None)
    assert _run(client, lambda p: _read_stream(p, f"{server.url}/broken/v1")) == (["he", "llo"], "broken")
    # a reader that comes late still gets every part that arrived before the break, then the break
    assert _run(client, lambda p: _read_stream(p, f"{server.url}/broken/v1", 0.3)) == (["he", "llo"], "broken")
    assert _run(client, lambda p: _read_stream(p, f"{server.url}/stall/v1")) == (["he", "llo"], "timeout")
    sent = server.server.config.app.state.seen[-1]["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_unknown_client_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown provider HTTP client 'curl'.*aiohttp"):
        make_provider_http("curl")
