"""The decision log's database writes in a process of their own, off the service's GIL.

The spool's ship thread (:class:`~llmroute.data.decision_log.spool.SpooledWriter`) spends ~0.08 ms of
Python CPU a record building rows and rollups for the database (``benchmarks/decision_log_writer.py``),
batched every 0.1 s. In the service that thread shares one GIL with the event loop and routing: a request
that runs beside a batch waits for it (``llmroute serve``, one attempt, concurrency 1: 87% of the slowest 3%
of requests overlapped a batch; p99 9.2-9.7 ms with the ship thread writing, 5.7-6.6 ms with it idle,
7.1-8.0 ms with the writes in a child process at lower priority, :data:`NICE`). :class:`ProcessSink` is a
:class:`~llmroute.data.decision_log.spool.LineSink`: the ship thread hands it the spool lines as they are
(the bytes the journal wrote, no decoding) and it passes them over a pipe to a child process, which
decodes them and writes them with :func:`~llmroute.data.decision_log.spool.store_lines`: the same
transaction, the same poison handling, the same idempotent inserts. The ship thread only waits on the
pipe, without the GIL.

Nothing changes for the guarantees of the spool: a batch is done once the child answered that it is
committed; if the child dies or cannot be started the write raises a transient error
(:class:`ShipperUnavailable`), the lines stay in the spool, and the next try starts a new child. The
child ignores SIGINT and SIGTERM (a Ctrl-C or a stop signal sent to the whole process group must not
kill it under the service's last flush) and exits when its input closes: when the service closes the
sink, or when the service process is gone.

Wire format, both ways big-endian: the request is the number of lines, each line's length, then the
lines; the answer is a length and a JSON object, ``{"stored": n, "poison": [[index, error], ...]}`` or
``{"transient": "<error>"}``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, Any

log = logging.getLogger(__name__)

URL_ENV = "LLMROUTE_SHIPPER_URL"  # the database URL reaches the child in its environment, not its command line
NICE = 10
"""The child's CPU priority, lowered by this much: its batches (~5 ms of CPU every 0.1 s at 250 requests a
second) yield a busy core to the service's own threads, which they slowed (p99 at concurrency 1: 9.2-9.7 ms
with the ship thread in the service, 7.1-8.0 ms from a child at nice 10, 7.4-7.7 at nice 19). At nice 10 a
saturated machine still gives it ~10% of a core's share, several times what it needs; nice 19 (~1.5%) could
leave the log behind for as long as the machine stays saturated (the records wait in the spool)."""
_U32 = struct.Struct("!I")


class ShipperUnavailable(ConnectionError):
    """The shipper process could not take or commit a batch right now (transient: retried)."""


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError(f"the pipe closed after {0 if not data else len(data)} of {n} bytes")
    return data


def encode_request(lines: list[bytes]) -> bytes:
    """The wire form of a batch (see module docstring)."""
    return b"".join([_U32.pack(len(lines)), *(_U32.pack(len(x)) for x in lines), *lines])


def read_request(stream: IO[bytes]) -> list[bytes] | None:
    """The next batch from ``stream``, or None at its end."""
    head = stream.read(4)
    if not head:
        return None
    if len(head) != 4:
        raise EOFError("a torn request header")
    (count,) = _U32.unpack(head)
    lengths = struct.unpack(f"!{count}I", _read_exact(stream, 4 * count)) if count else ()
    data = _read_exact(stream, sum(lengths))
    out, at = [], 0
    for n in lengths:
        out.append(data[at:at + n])
        at += n
    return out


class ProcessSink:
    """Writes spool lines to the decision log at ``url`` from a child process (see module docstring).

    Thread-safe (one batch at a time). The child is started at once, so that its imports run while the
    service starts, and again after a failure. :meth:`close` ends it."""

    def __init__(self, url: str, *, python: str = sys.executable) -> None:
        self.url = url
        self.python = python
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0  # children started (for tests and the service's log)
        self._closed = False
        try:
            self._start()
        except OSError as exc:  # retried at the first write
            log.error("decision-log shipper: cannot start its process: %s", exc)

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, URL_ENV: self.url}
        self._proc = subprocess.Popen(
            [self.python, "-m", "llmroute.data.decision_log.ship_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        self.started += 1
        return self._proc

    def _end_child(self, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        """The running child's process id (None when none runs)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def write_lines(self, lines: list[bytes]) -> tuple[int, list[tuple[int, str]]]:
        """See :meth:`~llmroute.data.decision_log.spool.LineSink.write_lines`; raises :class:`ShipperUnavailable`."""
        request = encode_request(lines)
        with self._lock:
            if self._closed:
                raise ShipperUnavailable("the decision-log shipper is closed")
            try:
                proc = self._proc if self._proc is not None and self._proc.poll() is None else None
                if proc is None:
                    self._end_child(1.0)
                    proc = self._start()
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(request)
                proc.stdin.flush()
                (n,) = _U32.unpack(_read_exact(proc.stdout, 4))
                reply: dict[str, Any] = json.loads(_read_exact(proc.stdout, n))
            except (OSError, EOFError, ValueError) as exc:
                code = self._proc.poll() if self._proc is not None else None
                self._end_child(1.0)
                raise ShipperUnavailable(
                    f"the decision-log shipper process failed ({type(exc).__name__}: {exc}"
                    + (f"; it exited with {code}" if code is not None else "") + ")"
                ) from exc
        if "transient" in reply:
            raise ShipperUnavailable(str(reply["transient"]))
        return int(reply["stored"]), [(int(i), str(e)) for i, e in reply["poison"]]

    def close(self, timeout: float = 5.0) -> None:
        """End the child (it finishes the batch it holds, if any); later writes raise."""
        with self._lock:
            self._closed = True
            self._end_child(timeout)


def serve(stdin: IO[bytes], stdout: IO[bytes], url: str) -> None:
    """The child's loop: answer each batch from ``stdin`` until it closes."""
    from llmroute.data.decision_log.spool import is_transient, store_lines
    from llmroute.data.decision_log.store import DecisionLogStore

    store = None
    try:
        while (lines := read_request(stdin)) is not None:
            try:
                if store is None:
                    store = DecisionLogStore(url, migrate=False)  # the service migrated it
                stored, poison = store_lines(store, lines)
                reply: dict[str, Any] = {"stored": stored, "poison": poison}
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("decision-log shipper: unexpected error")
                reply = {"transient": f"{type(exc).__name__}: {exc}"}
            body = json.dumps(reply).encode()
            stdout.write(_U32.pack(len(body)) + body)
            stdout.flush()
    finally:
        if store is not None:
            store.close()


def main() -> None:
    os.nice(NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = os.environ.get(URL_ENV)
    if not url:
        sys.exit(f"{URL_ENV} is not set: this process is started by llmroute's decision log")
    serve(sys.stdin.buffer, sys.stdout.buffer, url)


if __name__ == "__main__":
    main()
