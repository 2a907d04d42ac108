"""The durable path of the decision log: a local append-only spool in front of the database.

:class:`SpooledWriter` takes records on the request path without blocking and guarantees:

* **Journal**: a thread appends every accepted record to this process's spool segment (one JSON line
  each) and fsyncs, in batches at most ``sync_interval_s`` apart (default 50 ms). A record is
  *durable* once that fsync returned; :meth:`SpooledWriter.submit_durable` returns a future that
  resolves then (``/feedback`` answers 202 only after it).
* **Ship**: another thread reads the segment from its last committed offset and writes the records
  to the database in batches; after each commit the offset is saved next to the segment
  (``<segment>.done``). Once it has caught up it waits ``ship_interval_s`` (default 0.1 s) before
  the next batch unless ``batch_size`` lines are waiting (or :meth:`SpooledWriter.flush` or
  ``close`` asks for them now): one transaction per record costs ~0.3 ms of CPU a record against
  ~0.11 ms in batches of 100 (SQLite; ``benchmarks/decision_log_writer.py``), so records reach the
  database up to that much later and cost several times less. The lines the journal has just
  appended are shipped from memory (the records it encoded, no read-back, no decoding) when they
  are the next ones of the segment; anything else (adopted segments, a backlog after an outage
  beyond a bounded hand-over) is read from the file. With a :class:`LineSink` (what the service uses by
  default: :mod:`llmroute.data.decision_log.ship_process`) the thread hands over the lines themselves and
  a child process decodes and writes them, off this process's GIL. A database outage only makes it wait and retry (backoff up to
  ``retry_max_s``), forever: nothing is counted as failed because the database is down. Inserts are
  idempotent (keyed by decision id / feedback id), so replaying a stretch twice (a crash between a
  commit and its offset being saved) stores each record once.
* **Full disk**: when the journal cannot be written (ENOSPC, EIO, ...), records are kept in memory,
  encoded (at most ``max_memory_records``), shipped straight to the database when it is reachable
  and journaled when the disk is back. Durable submits are refused (:class:`SpoolUnavailable`).
  Only when memory is also full does :meth:`submit` refuse a record (it returns False, counted in
  ``dropped``): the caller must then tell its client (the service answers 503).
* **Poison records**: a record the database refuses as bad data (not a connection problem) is
  written on its own, and if it still fails it goes to ``rejected.jsonl`` in the spool directory
  with the error (counted in ``failed``): one bad record never sinks a batch or blocks the spool.
* **Restarts and several processes**: each process holds an exclusive ``flock`` on its own segment
  (created under a temporary name, locked, then renamed, so no one sees it unlocked). At start a
  writer adopts every segment in the directory whose lock it can take (its process is gone: a
  crash, kill -9, or a clean stop with the database down) and ships it before deleting it. Several
  workers of one host share a directory safely; replicas on different hosts each use their own.
* **kill -9** loses only records accepted but not yet appended: at most ``sync_interval_s`` of
  traffic (written-but-not-fsynced data survives a process kill; an OS crash may lose up to the
  last fsync interval as well).

The database never sees the same record twice and no accepted record is lost short of losing the
spool directory itself.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from llmroute.data.decision_log.records import (
    DecisionRecord,
    FeedbackRecord,
    LoggedCandidate,
    LogRecord,
    OutcomeRecord,
)

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "spool-"
SEGMENT_SUFFIX = ".jsonl"
DONE_SUFFIX = ".done"
REJECTED_NAME = "rejected.jsonl"


class RecordSink(Protocol):
    """What the writer needs from a store (:class:`~llmroute.data.decision_log.store.DecisionLogStore`)."""

    def write_many(self, records: list[LogRecord]) -> int: ...


class LineSink(Protocol):
    """A store that takes spool lines as they are (encoded, see :func:`encode_record`) and decodes them
    itself: :class:`~llmroute.data.decision_log.ship_process.ProcessSink`, which writes from a process of its
    own so that the database work never holds this process's GIL."""

    def write_lines(self, lines: list[bytes]) -> tuple[int, list[tuple[int, str]]]:
        """Write the records of ``lines`` in one go; returns how many were stored and the poison ones (index
        into ``lines``, error) it refused even alone. Raises a transient error (:func:`is_transient`) when the
        database cannot be written right now: the writer keeps the lines and retries."""
        ...


class SpoolUnavailable(RuntimeError):
    """A record could not be made durable (the spool's disk refuses writes)."""


# -- encoding -------------------------------------------------------------------------------------

_KINDS: dict[type, str] = {DecisionRecord: "d", OutcomeRecord: "o", FeedbackRecord: "f"}


_SCALARS = (str, float, int, bool, type(None))
_CANDIDATE_FIELDS = tuple(f.name for f in dataclasses.fields(LoggedCandidate))


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:  # most fields: no ABC checks for them
        return value
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and "$t" in value:
            return datetime.fromisoformat(value["$t"])
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


_LINE = json.JSONEncoder(ensure_ascii=True, allow_nan=True, check_circular=False, separators=(",", ":"))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {t: tuple(f.name for f in dataclasses.fields(t)) for t in _KINDS}


def encode_record(record: LogRecord) -> bytes:
    """One spool line (JSON, newline-terminated); embeddings as base64 float32 bytes. Lossless:
    :func:`decode_record` gives back an equal record (lone surrogates are kept as escapes)."""
    kind = _KINDS.get(type(record))
    if kind is None:
        raise TypeError(f"not a decision-log record: {type(record).__name__}")
    fields: dict[str, Any] = {}
    for name in _FIELD_NAMES[type(record)]:
        v = getattr(record, name)
        if type(v) in _SCALARS:
            fields[name] = v
        elif name == "embedding":
            fields[name] = {"$f32": base64.b64encode(array("f", v).tobytes()).decode("ascii")}
        elif name == "candidates":  # flat records of scalars: what dataclasses.asdict gives, without its deep copy
            fields[name] = [{k: getattr(c, k) for k in _CANDIDATE_FIELDS} for c in v]
        else:
            fields[name] = _plain(v)
    return _LINE.encode({"k": kind, "r": fields}).encode() + b"\n"


def decode_record(line: bytes) -> LogRecord:
    """The record of one spool line (see :func:`encode_record`); ValueError when it is not one."""
    obj = json.loads(line)
    kind, raw = obj["k"], obj["r"]
    fields: dict[str, Any] = {}
    for name, v in raw.items():
        if type(v) in _SCALARS:
            fields[name] = v
        elif name == "embedding" and isinstance(v, dict) and "$f32" in v:
            a = array("f")
            a.frombytes(base64.b64decode(v["$f32"]))
            fields[name] = tuple(a)
        elif name == "candidates" and kind == "d" and isinstance(v, list):
            fields[name] = tuple(LoggedCandidate(**c) for c in v)  # flat records of scalars
        else:
            fields[name] = _unplain(v)
    if kind == "d":
        if not isinstance(fields.setdefault("candidates", ()), tuple):
            raise ValueError(f"spool decision: candidates must be a list, got {type(raw['candidates']).__name__}")
        return DecisionRecord(**fields)
    if kind == "o":
        fields["attempts"] = tuple(fields.get("attempts", ()))
        return OutcomeRecord(**fields)
    if kind == "f":
        return FeedbackRecord(**fields)
    raise ValueError(f"unknown spool record kind {kind!r}")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says the database cannot be reached or written right now (retry later), False
    when it refuses the data itself (a poison record)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError,
                            sa.exc.DisconnectionError, ConnectionError, OSError))


def store_lines(store: RecordSink, lines: Sequence[bytes | LogRecord]) -> tuple[int, list[tuple[int, str]]]:
    """Write ``lines`` (spool lines, decoded here, or records) to ``store`` in one transaction; when the
    database refuses the batch as data (not a transient error), each record alone. Returns how many were
    stored and the poison ones: (index into ``lines``, error), undecodable lines included. Raises a
    transient error (:func:`is_transient`) as it comes: nothing is lost, the caller retries the lines."""
    poison: list[tuple[int, str]] = []
    records: list[tuple[int, LogRecord]] = []
    for i, line in enumerate(lines):
        if not isinstance(line, bytes):
            records.append((i, line))
            continue
        try:
            records.append((i, decode_record(line)))
        except (ValueError, TypeError, KeyError) as exc:
            poison.append((i, f"undecodable spool line: {exc}"))
    if not records:
        return 0, poison
    try:
        store.write_many([r for _, r in records])
        return len(records), poison
    except Exception as exc:
        if is_transient(exc):
            raise
    stored = 0
    for i, record in records:
        try:
            store.write_many([record])
            stored += 1
        except Exception as exc:
            if is_transient(exc):
                raise
            poison.append((i, f"{type(exc).__name__}: {exc}"))
    return stored, sorted(poison)


# -- segments -------------------------------------------------------------------------------------


@dataclass
class _Segment:
    path: Path
    fd: int  # holds the flock; the journal appends through it when this segment is current
    end: int  # bytes durably journaled (complete lines)
    done: int  # bytes whose records are committed to the database
    sealed: bool  # no more appends (rotated, or adopted from a dead process)
    adopted: bool

    @property
    def done_path(self) -> Path:
        return self.path.with_name(self.path.name + DONE_SUFFIX)


def _read_done(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip() or 0))
    except (OSError, ValueError):
        return 0


@dataclass(frozen=True)
class SpoolStats:
    """Counters since the writer was made (``pending``: accepted by this process, not yet in the
    database; ``replayed``: records of adopted segments committed; ``degraded``: 1 while the database
    or the spool's disk is refusing writes)."""

    submitted: int
    written: int
    dropped: int
    failed: int
    pending: int
    replayed: int
    held_in_memory: int
    spool_bytes: int
    degraded: int
    reason: str | None


class SpooledWriter:
    """The spool in ``directory`` in front of ``store``; see the module docstring for the guarantees.

    ``redact=True`` removes prompt text from decisions at submit. ``disk_write``/``disk_fsync``
    are the seam the reliability tests use to simulate a full disk (default ``os.write``/``os.fsync``).
    ``prepare`` runs once before the first write, retried until it succeeds (the service migrates a
    database that was down when it started).
    """

    def __init__(self, store: RecordSink | LineSink, directory: str | Path, *, redact: bool = False,
                 sync_interval_s: float = 0.05, batch_size: int = 500, max_memory_records: int = 50_000,
                 ship_interval_s: float = 0.1,
                 segment_bytes: int = 64 << 20, retry_max_s: float = 5.0,
                 disk_write: Callable[[int, bytes], int] = os.write,
                 disk_fsync: Callable[[int], None] = os.fsync,
                 prepare: Callable[[], None] | None = None) -> None:
        if sync_interval_s <= 0 or batch_size < 1 or max_memory_records < 1 or ship_interval_s < 0:
            raise ValueError("sync_interval_s must be > 0, ship_interval_s >= 0, batch_size and "
                             "max_memory_records >= 1")
        self.store = store
        self.directory = Path(directory)
        self.redact = redact
        self.sync_interval_s = sync_interval_s
        self.ship_interval_s = ship_interval_s
        self.batch_size = batch_size
        self.max_memory_records = max_memory_records
        self.segment_bytes = segment_bytes
        self.retry_max_s = retry_max_s
        self.disk_write = disk_write
        self.disk_fsync = disk_fsync
        self._prepare = prepare  # run (and retried like a write) before the first write, e.g. migrations
        self._cond = threading.Condition()
        self._incoming: list[tuple[LogRecord, Future[None] | None]] = []
        self._held: deque[bytes] = deque()  # encoded, not journaled (the disk refused them)
        self._segments: list[_Segment] = []
        # what the journal just appended, as the sink takes it (records, or the lines for a LineSink):
        # (segment, start offset, items, the lines' lengths)
        self._fresh: deque[tuple[_Segment, int, list[LogRecord] | list[bytes], list[int]]] = deque()
        self._takes_lines = callable(getattr(store, "write_lines", None))  # a LineSink: ship lines, not records
        self._fresh_records = 0
        self._fresh_max = max(4 * batch_size, 2000)
        self._current: _Segment | None = None
        self._submitted = self._written = self._dropped = self._failed = self._replayed = 0
        self._disk_error: str | None = None
        self._db_error: str | None = None
        self._stop = False
        self._halt = False  # close() gave up waiting: the ship thread stops at once
        self._hurry = threading.Event()  # set by flush() and close(): ship without waiting ship_interval_s
        self._closed = False
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SpooledWriter:
        """Adopt orphaned segments, open this process's segment and start both threads; returns ``self``."""
        if self._threads:
            return self
        if self._closed:
            raise RuntimeError("this SpooledWriter is closed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._adopt_orphans()
        try:
            self._current = self._new_segment()
        except OSError as exc:  # a full disk at start: run from memory until it is back
            self._disk_error = f"{type(exc).__name__}: {exc}"
            log.error("decision-log spool: cannot create a segment in %s: %s", self.directory, exc)
        for target, name in ((self._journal_loop, "decision-log-journal"), (self._ship_loop, "decision-log-ship")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self, timeout: float = 10.0) -> SpoolStats:
        """Journal what was accepted, ship what the database takes within ``timeout`` seconds, and stop.
        What is not shipped by then stays in the spool and is replayed by the next writer on this
        directory (only records held in memory because the disk was full can be lost; logged)."""
        if not self._closed:
            self._closed = True
            deadline = time.monotonic() + timeout
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            self._hurry.set()
            for t in self._threads:
                t.join(max(0.1, deadline - time.monotonic()))
            with self._cond:
                self._halt = True
                self._cond.notify_all()
            for t in self._threads:
                t.join(1.0)
            with self._cond:
                held = len(self._held) + len(self._incoming)
            if held:
                log.error("decision-log spool: %d records held in memory (disk and database unavailable) are lost "
                          "at shutdown", held)
            for seg in self._segments:
                if seg.done >= seg.end:  # all shipped: nothing for a next writer to replay
                    with contextlib.suppress(OSError):
                        seg.path.unlink()
                    with contextlib.suppress(OSError):
                        seg.done_path.unlink()
                with contextlib.suppress(OSError):
                    os.close(seg.fd)
        return self.stats()

    def __enter__(self) -> SpooledWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- request path ----------------------------------------------------------------------------

    def _accept(self, record: LogRecord, future: Future[None] | None) -> bool:
        if not isinstance(record, (DecisionRecord, OutcomeRecord, FeedbackRecord)):
            raise TypeError(f"not a decision-log record: {type(record).__name__}")
        if self.redact and isinstance(record, DecisionRecord):
            record = record.redacted()
        with self._cond:
            if self._closed or len(self._incoming) + len(self._held) >= self.max_memory_records:
                self._dropped += 1
                n = self._dropped
                accepted = False
            else:
                self._incoming.append((record, future))
                self._submitted += 1
                accepted = True
                if len(self._incoming) >= self.batch_size:
                    self._cond.notify_all()
        if not accepted and (n == 1 or n % 1000 == 0):
            log.warning("decision-log spool: refused a record (closed, or %d records held in memory); %d so far",
                        self.max_memory_records, n)
        return accepted

    def submit(self, record: LogRecord) -> bool:
        """Accept ``record`` without blocking. False (counted in ``dropped``) only when the writer is
        closed or ``max_memory_records`` are already waiting: the record will not be stored."""
        return self._accept(record, None)

    def submit_durable(self, record: LogRecord) -> Future[None]:
        """Accept ``record`` and return a future that resolves once it is fsynced to the spool, or fails
        with :class:`SpoolUnavailable` (disk refusing writes, writer full or closed): then it is not kept."""
        future: Future[None] = Future()
        if not self._accept(record, future):
            future.set_exception(SpoolUnavailable("the decision log is not accepting records right now"))
        return future

    def accepting(self) -> bool:
        """False while :meth:`submit` would refuse records (closed, or the memory bound is reached)."""
        with self._cond:
            return not self._closed and len(self._incoming) + len(self._held) < self.max_memory_records

    def degraded_reason(self) -> str | None:
        """None when the spool's disk and the database both take writes; else what is refusing them."""
        reasons = [r for r in (self._db_error and "database unavailable", self._disk_error and "spool disk unavailable") if r]
        return "; ".join(reasons) or None

    def stats(self) -> SpoolStats:
        with self._cond:
            spool_bytes = sum(s.end - s.done for s in self._segments)
            reason = self.degraded_reason()
            return SpoolStats(
                submitted=self._submitted, written=self._written, dropped=self._dropped, failed=self._failed,
                pending=max(0, self._submitted - self._written - self._failed), replayed=self._replayed,
                held_in_memory=len(self._held), spool_bytes=spool_bytes, degraded=int(reason is not None),
                reason=reason,
            )

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every record accepted so far is in the database; False on timeout."""
        deadline = time.monotonic() + timeout
        self._hurry.set()
        try:
            while time.monotonic() < deadline:
                st = self.stats()
                if st.pending == 0 and st.spool_bytes == 0:
                    return True
                time.sleep(0.01)
            return False
        finally:
            if not self._stop:
                self._hurry.clear()

    # -- journal thread --------------------------------------------------------------------------

    def _new_segment(self) -> _Segment:
        name = f"{SEGMENT_PREFIX}{os.getpid()}-{time.time_ns()}{SEGMENT_SUFFIX}"
        tmp = self.directory / (name + ".tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, self.directory / name)
        seg = _Segment(self.directory / name, fd, end=0, done=0, sealed=False, adopted=False)
        with self._cond:
            self._segments.append(seg)
        return seg

    def _append(self, data: bytes, items: list[LogRecord] | list[bytes] | None = None,
                lengths: list[int] | None = None) -> None:
        """Append and fsync ``data`` to the current segment; on failure cut any torn tail and raise.
        ``items``: what ``data`` holds, line for line, as the sink takes it (the records, or for a
        :class:`LineSink` the lines; ``lengths``: the lines' byte lengths), handed to the ship thread so that
        it need not read and decode what was just written (see :meth:`_take_fresh`)."""
        if self._current is None:
            self._current = self._new_segment()
        seg = self._current
        try:
            view = memoryview(data)
            while view:
                n = self.disk_write(seg.fd, bytes(view))
                view = view[n:]
            self.disk_fsync(seg.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(seg.fd, seg.end)  # a partial line must not be read as a record
            raise
        with self._cond:
            start = seg.end
            seg.end += len(data)
            if items and lengths is not None and self._fresh_max > 0:
                self._fresh.append((seg, start, items, lengths))
                self._fresh_records += len(items)
                while self._fresh_records > self._fresh_max:  # the database is behind: the file has them
                    self._fresh_records -= len(self._fresh.popleft()[2])
            self._cond.notify_all()
        if seg.end >= self.segment_bytes:
            with self._cond:
                seg.sealed = True
            self._current = None

    def _journal_loop(self) -> None:
        while True:
            with self._cond:
                if not self._incoming and not (self._held and self._disk_error) and not self._stop:
                    self._cond.wait(self.sync_interval_s)
                taken, self._incoming = self._incoming, []
                retry_held = list(self._held) if self._held else []
                self._held.clear()
                stopping = self._stop
            lines = [encode_record(r) for r, _ in taken]
            data = b"".join(retry_held) + b"".join(lines)
            if data:
                try:
                    if retry_held:
                        self._append(data)
                    else:
                        self._append(data, lines if self._takes_lines else [r for r, _ in taken],
                                     [len(x) for x in lines])
                except OSError as exc:
                    self._on_disk_error(exc, taken, lines, retry_held)
                else:
                    if self._disk_error is not None:
                        log.warning("decision-log spool: the disk takes writes again")
                    self._disk_error = None
                    for _, fut in taken:
                        if fut is not None:
                            fut.set_result(None)
            if stopping:
                with self._cond:
                    if not self._incoming:
                        return
            elif self._disk_error is not None:
                time.sleep(min(0.5, self.sync_interval_s * 4))  # do not spin on a full disk

    def _on_disk_error(self, exc: OSError, taken: list[tuple[LogRecord, Future[None] | None]],
                       lines: list[bytes], retry_held: list[bytes]) -> None:
        if self._disk_error is None:
            log.error("decision-log spool: cannot write %s (%s); holding records in memory",
                      self._current.path if self._current else self.directory, exc)
        self._disk_error = f"{errno.errorcode.get(exc.errno or 0, type(exc).__name__)}: {exc.strerror or exc}"
        keep = list(retry_held)
        refused = 0
        for (_, fut), line in zip(taken, lines, strict=True):
            if fut is not None:  # a durable submit is refused, not kept: its caller tells the client to retry
                fut.set_exception(SpoolUnavailable(f"the spool cannot be written: {self._disk_error}"))
                refused += 1
            else:
                keep.append(line)
        with self._cond:
            self._held.extendleft(reversed(keep))
            self._submitted -= refused
            self._cond.notify_all()

    # -- ship thread -----------------------------------------------------------------------------

    def _take_fresh(self, seg: _Segment) -> tuple[list[LogRecord] | list[bytes], int] | None:
        """Up to ``batch_size`` records of ``seg`` from its shipped offset on, as the journal handed
        them over (no read, no decoding; their lines for a :class:`LineSink`), and the bytes they take
        in the file: only when they start exactly at ``seg.done``; entries already behind what is
        shipped are dropped. Call holding ``self._cond``."""
        fresh = self._fresh
        while fresh and fresh[0][1] < fresh[0][0].done:  # shipped from the file meanwhile
            self._fresh_records -= len(fresh.popleft()[2])
        if not fresh or fresh[0][0] is not seg or fresh[0][1] != seg.done:
            return None
        records: list[Any] = []
        end = seg.done
        while fresh and fresh[0][0] is seg and fresh[0][1] == end and len(records) < self.batch_size:
            _, start, items, lengths = fresh.popleft()
            k = min(len(items), self.batch_size - len(records))
            records.extend(items[:k])
            end = start + sum(lengths[:k])
            self._fresh_records -= k
            if k < len(items):  # the rest of this append waits for the next batch
                fresh.appendleft((seg, end, items[k:], lengths[k:]))
        return records, end - seg.done

    def _next_work(self) -> tuple[list[bytes] | list[LogRecord], _Segment | None, int] | None:
        """What to ship: from memory (held) first, else from the oldest segment with unshipped lines
        (the records the journal just handed over when they are next, else lines read from the file)."""
        with self._cond:
            if self._held and self._disk_error is not None:
                n = min(self.batch_size, len(self._held))
                return [self._held.popleft() for _ in range(n)], None, 0
            segments = [s for s in self._segments if s.done < s.end]
            fresh = self._take_fresh(segments[0]) if segments else None
        if fresh is not None:
            return fresh[0], segments[0], fresh[1]
        for seg in segments:
            lines, consumed = self._read_lines(seg)
            if consumed:
                return lines, seg, consumed
        return None

    def _read_lines(self, seg: _Segment) -> tuple[list[bytes], int]:
        size = 1 << 20
        while True:  # a chunk with at least one whole line (lines longer than 1 MB double the chunk)
            chunk = os.pread(seg.fd, min(seg.end - seg.done, size), seg.done)
            cut = chunk.rfind(b"\n") + 1
            if cut or len(chunk) >= seg.end - seg.done:
                break
            size *= 2
        lines = chunk[:cut].splitlines(keepends=True)[: self.batch_size]
        return lines, sum(len(x) for x in lines)

    def _ship_loop(self) -> None:
        backoff = 0.05
        while not self._halt:
            work = self._next_work()
            if work is None:
                self._cleanup_finished()
                with self._cond:
                    if self._stop and not self._incoming and all(t is threading.current_thread() or not t.is_alive()
                                                                  for t in self._threads[:1]):
                        return
                    self._cond.wait(0.2)
                continue
            lines, seg, consumed = work
            try:
                stored = self._ship(lines)
            except Exception as exc:  # noqa: BLE001 - transient: wait and retry the same lines
                if seg is None:  # held lines (bytes): back to memory; a segment's records stay in its file
                    with self._cond:
                        self._held.extendleft(reversed(lines))  # type: ignore[arg-type]  # bytes when seg is None
                if self._db_error is None:
                    log.error("decision-log spool: the database refuses writes (%s: %s); records stay in the "
                              "spool and are retried", type(exc).__name__, exc)
                self._db_error = f"{type(exc).__name__}"
                with self._cond:
                    if self._stop:
                        return  # unshipped lines stay in the spool for the next writer
                    self._cond.wait(backoff)
                backoff = min(self.retry_max_s, backoff * 2)
                continue
            if self._db_error is not None:
                log.warning("decision-log spool: the database takes writes again")
            self._db_error = None
            backoff = 0.05
            with self._cond:
                if seg is None or not seg.adopted:
                    self._written += stored
                else:
                    self._replayed += stored
                if seg is not None:
                    seg.done += consumed
            if seg is not None:
                self._save_done(seg)
            if len(lines) < self.batch_size and self.ship_interval_s > 0:  # caught up: let a batch gather
                self._hurry.wait(self.ship_interval_s)

    def _ship(self, lines: list[bytes] | list[LogRecord]) -> int:
        """Write ``lines`` (spool lines, or the records the journal handed over) to the database and
        return how many were stored; raises only on a transient error (poison goes to rejected.jsonl)."""
        if not lines:
            return 0
        if self._prepare is not None:
            self._prepare()  # a failure is retried like a failed write (the database may be down)
            self._prepare = None
        if self._takes_lines:  # a LineSink decodes and writes elsewhere (another process); it is only handed lines
            stored, poison = self.store.write_lines(lines)  # type: ignore[union-attr, arg-type]  # a LineSink
        else:
            stored, poison = store_lines(self.store, lines)  # type: ignore[arg-type]  # a RecordSink
        for i, error in poison:
            line = lines[i]
            self._reject(line if isinstance(line, bytes) else encode_record(line), error)
        return stored

    def _reject(self, line: bytes, error: str) -> None:
        with self._cond:
            self._failed += 1
        log.error("decision-log spool: the database refused a record; kept in %s: %s",
                  self.directory / REJECTED_NAME, error[:500])
        entry = json.dumps({"error": error[:2000], "line": line.decode("utf-8", "replace").rstrip("\n")}) + "\n"
        with contextlib.suppress(OSError), open(self.directory / REJECTED_NAME, "a", encoding="utf-8") as fh:
            fh.write(entry)
            fh.flush()
            os.fsync(fh.fileno())

    def _save_done(self, seg: _Segment) -> None:
        with contextlib.suppress(OSError):  # losing it only means an idempotent replay
            seg.done_path.write_text(str(seg.done))

    def _cleanup_finished(self) -> None:
        with self._cond:
            finished = [s for s in self._segments if s.sealed and s.done >= s.end]
            for s in finished:
                self._segments.remove(s)
        for s in finished:
            with contextlib.suppress(OSError):
                s.path.unlink()
            with contextlib.suppress(OSError):
                s.done_path.unlink()
            with contextlib.suppress(OSError):
                os.close(s.fd)

    # -- adoption --------------------------------------------------------------------------------

    def _adopt_orphans(self) -> None:
        for path in sorted(self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live process's segment
                continue
            size = os.fstat(fd).st_size
            data_end = size
            if size:
                tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
                if not tail.endswith(b"\n"):
                    cut = tail.rfind(b"\n")
                    data_end = (size - len(tail) + cut + 1) if cut >= 0 else (size - len(tail) if size > len(tail) else 0)
                    os.ftruncate(fd, data_end)  # the torn line of a crash mid-append
            seg = _Segment(path, fd, end=data_end, done=0, sealed=True, adopted=True)
            seg.done = min(_read_done(seg.done_path), data_end)
            self._segments.append(seg)
            if seg.done < seg.end:
                log.warning("decision-log spool: replaying %d bytes left by a stopped process in %s",
                            seg.end - seg.done, path)
        # markers whose segment is gone
        for marker in self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}{DONE_SUFFIX}"):
            if not marker.with_name(marker.name.removesuffix(DONE_SUFFIX)).exists():
                with contextlib.suppress(OSError):
                    marker.unlink()
