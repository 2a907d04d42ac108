"""A background writer: the request path hands records over without waiting for the database.

:meth:`DecisionLogWriter.submit` never blocks: it puts the record on a bounded in-memory queue. A
thread takes records off the queue and writes them in batches of up to ``batch_size``, at the
latest ``flush_interval_s`` after the first record of a batch arrived. :meth:`flush` waits until
everything submitted before it is written; :meth:`close` flushes and stops the thread (the caller
registers it with ``atexit`` or a lifespan; nothing is registered at import).

What can be lost, and how it is counted:

* **Queue full** (the database is slower than traffic for longer than ``max_queue`` records):
  the *new* record is refused, counted in :attr:`WriterStats.dropped` and logged as a warning
  (first drop, then every 1000th). Nothing already queued is discarded.
* **Database error**: a batch is retried ``max_retries`` times with backoff (writes are
  idempotent, so a retry never duplicates); if it still fails, its records are written one by one
  so one bad record cannot sink the batch, and those that still fail are counted in
  :attr:`WriterStats.failed` and logged as an error.
* **Hard crash** (SIGKILL, OOM kill, power loss of the process): records submitted but not yet
  committed are lost: the batch being collected or written (at most ``batch_size`` records) plus
  whatever is still queued (at most ``max_queue``); under steady traffic, that is about the last
  ``flush_interval_s`` seconds of records. Every committed batch is intact (one transaction per
  batch; SQLite in WAL mode), and a new writer on the same store simply appends.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from llmroute.data.decision_log.records import DecisionRecord, FeedbackRecord, LogRecord, OutcomeRecord

log = logging.getLogger(__name__)


class RecordSink(Protocol):
    """What the writer needs from a store (:class:`DecisionLogStore` is one)."""

    def write_many(self, records: list[LogRecord]) -> int: ...


@dataclass(frozen=True)
class WriterStats:
    """Counters since the writer was made: ``submitted == written + failed + pending``."""

    submitted: int
    written: int
    dropped: int
    failed: int
    pending: int


@dataclass
class _Marker:
    stop: bool
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class DecisionLogWriter:
    """Batches records to a store from a background thread; see the module docstring for loss bounds.

    ``redact=True`` removes prompt text from decisions at submit (hash and embedding are kept).
    """

    def __init__(self, store: RecordSink, *, batch_size: int = 100, flush_interval_s: float = 0.5,
                 max_queue: int = 10_000, redact: bool = False, max_retries: int = 3,
                 retry_backoff_s: float = 0.2) -> None:
        if batch_size < 1 or max_queue < 1 or flush_interval_s <= 0:
            raise ValueError("batch_size and max_queue must be >= 1 and flush_interval_s > 0")
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.redact = redact
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self._queue: queue.Queue[LogRecord | _Marker] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._submitted = self._written = self._dropped = self._failed = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> DecisionLogWriter:
        """Start the background thread (idempotent); returns ``self``."""
        if self._closed:
            raise RuntimeError("this DecisionLogWriter is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> DecisionLogWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float | None = 30.0) -> WriterStats:
        """Write everything queued, stop the thread and return the final counters (idempotent)."""
        if not self._closed:
            self._closed = True
            if self._thread is not None:
                marker = _Marker(stop=True)
                self._queue.put(marker)  # may wait while the thread drains a full queue
                marker.done.wait(timeout)
                self._thread.join(timeout)
                if not self._thread.is_alive():
                    self._drain()  # records that raced with close() (submitted as the thread stopped)
        return self.stats()

    def _drain(self) -> None:
        rest: list[LogRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Marker):
                item.done.set()
            else:
                rest.append(item)
        self._write(rest)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every record submitted before this call is written (or failed); False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("flush() needs a started, open DecisionLogWriter")
        marker = _Marker(stop=False)
        self._queue.put(marker, timeout=timeout)
        return marker.done.wait(timeout)

    # -- request path ----------------------------------------------------------------------------

    def submit(self, record: LogRecord) -> bool:
        """Queue a record without blocking; False (and counted in ``dropped``) if it was refused."""
        if not isinstance(record, (DecisionRecord, OutcomeRecord, FeedbackRecord)):
            raise TypeError(f"not a decision-log record: {type(record).__name__}")
        if self.redact and isinstance(record, DecisionRecord):
            record = record.redacted()
        if self._closed:
            self._drop("writer is closed")
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop(f"queue full ({self.max_queue} records)")
            return False
        with self._lock:
            self._submitted += 1
        return True

    def _drop(self, why: str) -> None:
        with self._lock:
            self._dropped += 1
            n = self._dropped
        if n == 1 or n % 1000 == 0:
            log.warning("decision log: refused a record (%s); %d refused so far", why, n)

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(submitted=self._submitted, written=self._written, dropped=self._dropped,
                               failed=self._failed,
                               pending=self._submitted - self._written - self._failed)

    @property
    def dropped(self) -> int:
        return self.stats().dropped

    # -- background thread -----------------------------------------------------------------------

    def _write(self, batch: list[LogRecord]) -> None:
        if not batch:
            return
        for attempt in range(self.max_retries + 1):
            try:
                self.store.write_many(batch)
            except Exception:  # noqa: BLE001 - whatever the store raised: retry, then write one record at a time
                if attempt == self.max_retries:
                    self._write_one_by_one(batch)
                    break
                time.sleep(self.retry_backoff_s * (2 ** attempt))
            else:
                with self._lock:
                    self._written += len(batch)
                break
        batch.clear()

    def _write_one_by_one(self, batch: list[LogRecord]) -> None:
        failed = 0
        for record in batch:
            try:
                self.store.write_many([record])
            except Exception:
                failed += 1
                if failed == 1:
                    log.exception("decision log: could not write a %s for decision %s",
                                  type(record).__name__, record.decision_id)
        if failed:
            log.error("decision log: %d of a batch of %d records could not be written; counted as failed",
                      failed, len(batch))
        with self._lock:
            self._written += len(batch) - failed
            self._failed += failed

    def _run(self) -> None:
        batch: list[LogRecord] = []
        deadline = 0.0
        while True:
            timeout = None if not batch else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._write(batch)
                continue
            if isinstance(item, _Marker):
                self._write(batch)
                item.done.set()
                if item.stop:
                    return
                continue
            if not batch:
                deadline = time.monotonic() + self.flush_interval_s
            batch.append(item)
            if len(batch) >= self.batch_size:
                self._write(batch)
