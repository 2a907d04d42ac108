"""The HTTP client under provider calls: a seam (:class:`ProviderHTTP`) and its implementations by name
(:data:`HTTP_CLIENTS`, chosen with ``LLMROUTE_SERVE_PROVIDER_HTTP``).

- ``aiohttp`` (default): one ``aiohttp.ClientSession`` with a keep-alive pool. Measured on a 2-core
  machine against a local server, a chat call cost the client 0.14-0.27 ms of CPU, against 0.9-1.7 ms
  for httpx, whose cost also grew with concurrency (``benchmarks/provider_clients.py``);
- ``httpx``: an ``httpx.AsyncClient`` (any transport, e.g. ``httpx.MockTransport`` in tests).

Both give the same answers and the same failures: a connection that cannot be made, or breaks, raises
:class:`ProviderConnectionError`; no answer (or no next byte of a stream) within the read timeout
raises :class:`ProviderTimeout`. A request body is sent as the bytes given (serialised once per call,
not once per try), and a URL is parsed by the client's own cache.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx


class ProviderTimeout(Exception):
    """No answer, or no next part of a streamed answer, within the timeout."""


class ProviderConnectionError(Exception):
    """The connection could not be made, or broke before the answer was complete."""


@dataclass(frozen=True)
class Timeouts:
    """``read_s``: longest wait for the answer or for the next bytes of it (and for a free pooled
    connection); ``connect_s``: longest wait for a new connection."""

    read_s: float
    connect_s: float


class ProviderResponse(Protocol):
    """An answer whose headers are in; its body is read with :meth:`read` or :meth:`lines` (not both)."""

    status: int
    content_type: str

    async def read(self) -> bytes: ...

    def lines(self) -> AsyncIterator[str]:
        """The body's lines as text (without line ends), as they arrive."""
        ...

    async def aclose(self) -> None: ...


class ProviderHTTP(Protocol):
    """POSTs a JSON body and hands back the response once its headers are in."""

    name: str

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts) -> ProviderResponse: ...

    async def aclose(self) -> None: ...


# ---- aiohttp ------------------------------------------------------------------------------------


class _AiohttpResponse:
    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self.status = int(resp.status)
        self.content_type = resp.headers.get("Content-Type", "")

    async def read(self) -> bytes:
        import aiohttp

        try:
            return bytes(await self._resp.read())
        except TimeoutError as exc:
            raise ProviderTimeout(f"timed out reading the answer ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise ProviderConnectionError(f"answer broken ({type(exc).__name__})") from exc
        finally:
            self._resp.release()

    async def lines(self) -> AsyncIterator[str]:
        import aiohttp

        pending = b""
        try:
            async for chunk in self._resp.content.iter_any():
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.rstrip(b"\r").decode("utf-8", "replace")
            if pending:
                yield pending.rstrip(b"\r").decode("utf-8", "replace")
        except TimeoutError as exc:
            raise ProviderTimeout(f"stream timed out ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            *complete, _ = (pending + _received(self._resp.content)).split(b"\n")  # a cut-off last line is dropped
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
            raise ProviderConnectionError(f"stream broken ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        self._resp.close()


def _received(content: Any) -> bytes:
    """The bytes of a broken stream that arrived before the break and were not read yet. aiohttp's StreamReader
    raises the break before it hands out what it holds (``readany`` checks its exception first), so a reader that
    comes late - a busy process, a provider that sent its last parts and hung up in one go - would lose parts of
    the answer that did arrive; httpx hands them out first. ``_read_nowait`` (aiohttp 3.x) takes them as they are."""
    read_nowait = getattr(content, "_read_nowait", None)
    return bytes(read_nowait(-1)) if read_nowait is not None else b""


class AiohttpClient:
    """:class:`ProviderHTTP` on one ``aiohttp.ClientSession`` (made on first use, inside the event loop)."""

    name = "aiohttp"

    def __init__(self, max_connections: int = 200, keepalive_s: float = 30.0) -> None:
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._session: Any = None
        self._timeouts: dict[Timeouts, Any] = {}

    def _get_session(self) -> Any:
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                             keepalive_timeout=self.keepalive_s)
            # no cookie jar: provider answers must not carry state from one request into the next
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                                  auto_decompress=True, raise_for_status=False)
        return self._session

    def _timeout(self, t: Timeouts) -> Any:
        timeout = self._timeouts.get(t)
        if timeout is None:
            import aiohttp

            # the pool wait counts against read_s (httpx's pool timeout), the new connection against connect_s
            timeout = self._timeouts[t] = aiohttp.ClientTimeout(
                total=None, connect=t.read_s + t.connect_s, sock_connect=t.connect_s, sock_read=t.read_s
            )
        return timeout

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts) -> ProviderResponse:
        import aiohttp

        session = self._get_session()
        try:
            resp = await session.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                                      timeout=self._timeout(timeouts))
        except TimeoutError as exc:
            raise ProviderTimeout(f"timed out ({type(exc).__name__})") from exc
        except aiohttp.ClientError as exc:
            raise ProviderConnectionError(f"connection error ({type(exc).__name__})") from exc
        return _AiohttpResponse(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# ---- httpx --------------------------------------------------------------------------------------


class _HttpxResponse:
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.content_type = resp.headers.get("content-type", "")

    async def read(self) -> bytes:
        try:
            return await self._resp.aread()
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"timed out reading the answer ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ProviderConnectionError(f"answer broken ({type(exc).__name__})") from exc
        finally:
            await self._resp.aclose()

    async def lines(self) -> AsyncIterator[str]:
        try:
            async for line in self._resp.aiter_lines():
                yield line
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"stream timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ProviderConnectionError(f"stream broken ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        await self._resp.aclose()


class HttpxClient:
    """:class:`ProviderHTTP` on an ``httpx.AsyncClient`` (given, e.g. with a mock transport, or made here)."""

    name = "httpx"

    def __init__(self, client: httpx.AsyncClient | None = None, max_connections: int = 200,
                 owned: bool | None = None) -> None:
        self.owned = client is None if owned is None else owned
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=50)
        )
        self._timeouts: dict[Timeouts, httpx.Timeout] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts) -> ProviderResponse:
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            timeout = self._timeouts[timeouts] = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        request = self.client.build_request(
            "POST", url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=timeout
        )
        try:
            resp = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ProviderConnectionError(f"connection error ({type(exc).__name__})") from exc
        return _HttpxResponse(resp)

    async def aclose(self) -> None:
        if self.owned:
            await self.client.aclose()


HTTP_CLIENTS: dict[str, Callable[[], ProviderHTTP]] = {
    "aiohttp": AiohttpClient,
    "httpx": HttpxClient,
}


def make_provider_http(name: str, transport: httpx.AsyncBaseTransport | None = None) -> ProviderHTTP:
    """The client named ``name`` (a key of :data:`HTTP_CLIENTS`); with a ``transport``, always an httpx
    client on that transport (tests inject ``httpx.MockTransport`` this way)."""
    if transport is not None:
        return HttpxClient(httpx.AsyncClient(transport=transport), owned=True)
    try:
        factory = HTTP_CLIENTS[name]
    except KeyError:
        raise ValueError(f"unknown provider HTTP client {name!r}; expected one of {sorted(HTTP_CLIENTS)}") from None
    return factory()


def as_provider_http(http: ProviderHTTP | httpx.AsyncClient) -> ProviderHTTP:
    """``http`` as a :class:`ProviderHTTP` (an ``httpx.AsyncClient`` is wrapped, not closed by the wrapper)."""
    return HttpxClient(http) if isinstance(http, httpx.AsyncClient) else http
