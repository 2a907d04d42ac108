"""uvicorn's httptools protocol with bounded request headers: what a client can make the server read
before any authentication.

httptools has no header size limit and builds each header value by concatenation, so one 50 MB
``Authorization`` header kept the event loop busy for seconds (every other request, ``/health``
included, waited). :class:`BoundedHttpToolsProtocol` counts the bytes of the request line and
headers *before* they reach the parser and answers ``431`` (and closes) past ``max_header_bytes``;
headers that take longer than ``header_timeout_s`` to arrive (a slow-loris client) get ``408``.
``llmroute serve`` runs uvicorn with it (``--http llmroute.serving.http_protocol:BoundedHttpToolsProtocol``).
The limits come from ``LLMROUTE_SERVE_MAX_HEADER_BYTES`` and ``LLMROUTE_SERVE_HEADER_TIMEOUT_S``
(read once, at the first connection).
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL_PATH = "llmroute.serving.http_protocol:BoundedHttpToolsProtocol"
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0


@functools.lru_cache(maxsize=1)
def header_limits() -> tuple[int, float]:
    """(max header bytes, header timeout in seconds) from the environment, else the defaults."""
    size = int(os.environ.get("LLMROUTE_SERVE_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES))
    timeout = float(os.environ.get("LLMROUTE_SERVE_HEADER_TIMEOUT_S", DEFAULT_HEADER_TIMEOUT_S))
    if size < 1024 or timeout <= 0:
        raise ValueError("LLMROUTE_SERVE_MAX_HEADER_BYTES must be >= 1024 and LLMROUTE_SERVE_HEADER_TIMEOUT_S > 0")
    return size, timeout


def _reply(status: bytes, message: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\n\r\n" + message)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses oversized (431) and too slow (408) request headers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes, self._header_timeout_s = header_limits()
        self._in_headers = True
        self._header_bytes = 0
        self._tail = b""
        self._header_timer: asyncio.TimerHandle | None = None

    def _refuse(self, status: bytes, why: str) -> None:
        self._cancel_header_timer()
        body = b'{"error": {"type": "' + why.split(":")[0].encode() + b'", "message": "' + why.encode() + b'"}}'
        if not self.transport.is_closing():
            self.transport.write(_reply(status, body))
            self.transport.close()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._in_headers and self._header_bytes:
            self._refuse(b"408 Request Timeout", f"header_timeout: request headers took over {self._header_timeout_s:g} s")

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            part = len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            if self._header_bytes == 0 and part and self._header_timer is None:
                self._header_timer = self.loop.call_later(self._header_timeout_s, self._header_timeout)
            self._header_bytes += part
            if self._header_bytes > self._max_header_bytes:
                self._refuse(b"431 Request Header Fields Too Large",
                             f"headers_too_large: request line and headers exceed {self._max_header_bytes} bytes")
                return
            self._tail = window[-3:]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers, self._header_bytes, self._tail = True, 0, b""

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)
