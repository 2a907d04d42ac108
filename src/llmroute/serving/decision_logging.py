"""The service's side of the decision log (:mod:`llmroute.data.decision_log`).

The lifespan opens a :class:`DecisionLog` (store + background writer) off the event loop and closes
it at shutdown, which writes everything still queued. Request handlers build records in the compute
pool (:func:`decision_record`) or on the loop when they are trivial (:func:`outcome_record`) and
hand them over with :meth:`DecisionLog.submit`, which never blocks; records go through a local
spool (:mod:`llmroute.data.decision_log.spool`) to the database. A refused record (the spool holds
its memory bound while both the disk and the database refuse writes) is counted (``dropped``) and
its request answered 503: nothing acknowledged is lost.

The embedding of a routed prompt is logged without embedding it twice: the router's decision
carries the embedding row it was made with (``Decision.embedding``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from llmroute.data.decision_log import (
    DecisionLogStore,
    DecisionRecord,
    LogRecord,
    OutcomeRecord,
    default_db_url,
    mask_url,
)
from llmroute.data.decision_log.migrate import upgrade_to_head
from llmroute.data.decision_log.records import decision_id_time
from llmroute.data.decision_log.ship_process import ProcessSink
from llmroute.data.decision_log.spool import SpooledWriter, SpoolStats
from llmroute.router.decision import Constraints, Decision
from llmroute.router.router import Router
from llmroute.serving.cascade import CascadeResult
from llmroute.serving.errors import ServiceError

log = logging.getLogger("llmroute.serving")


def resolve_log_url(configured: str | None, home: Any) -> str | None:
    """The log's URL: ``configured``, or the default SQLite file under ``home``; None when logging is off."""
    if configured is None:
        return default_db_url(home)
    if configured.strip().lower() in ("", "off"):
        return None
    return configured


class DecisionLog:
    """The store and its spooled writer (:class:`~llmroute.data.decision_log.spool.SpooledWriter`),
    opened together and closed together.

    Every accepted record reaches the database exactly once, across database outages, a full disk
    and restarts (the spool's guarantees). :meth:`decision_known` answers whether a decision id
    exists for ``/feedback``.
    """

    def __init__(self, store: DecisionLogStore, writer: SpooledWriter, feedback_grace_s: float = 600.0) -> None:
        self.store = store
        self.writer = writer
        self.feedback_grace_s = feedback_grace_s
        self._recent: OrderedDict[str, None] = OrderedDict()  # decision ids this process accepted
        self._recent_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, redact: bool, spool_dir: Path, *, feedback_grace_s: float = 600.0,
             sync_interval_s: float = 0.05, max_memory_records: int = 50_000,
             shipper: str = "thread") -> DecisionLog:
        """Open (and migrate) the store at ``url`` and start the writer on ``spool_dir``, which first
        replays what earlier processes left there. ``shipper``: ``"process"`` writes to the database from
        a child process (:class:`~llmroute.data.decision_log.ship_process.ProcessSink`), ``"thread"`` from
        the writer's ship thread. Blocking: call it off the loop."""
        if shipper not in ("process", "thread"):
            raise ValueError(f"shipper must be 'process' or 'thread', got {shipper!r}")
        prepare = None
        try:
            store = DecisionLogStore(url)
        except Exception as exc:
            unreachable = isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError))
            if not unreachable or url.startswith("sqlite"):  # a local file that cannot be opened is a mistake
                raise RuntimeError(
                    f"cannot open the decision log at {mask_url(url)}: {type(exc).__name__}: {exc} "
                    "(set LLMROUTE_SERVE_DECISION_LOG_URL to another database, or to 'off' to serve without one)"
                ) from exc
            # the database is down: serve anyway, spool records, and migrate once it is back
            log.error("decision log at %s is unavailable (%s); records are spooled until it is back",
                      mask_url(url), type(exc).__name__)
            store = DecisionLogStore(url, migrate=False)
            prepare = functools.partial(upgrade_to_head, store.engine)
        log.info("decision log: %s%s, spool %s", mask_url(url), " (prompts redacted)" if redact else "", spool_dir)
        sink: ProcessSink | DecisionLogStore = ProcessSink(url) if shipper == "process" else store
        writer = SpooledWriter(sink, spool_dir, redact=redact, sync_interval_s=sync_interval_s,
                               max_memory_records=max_memory_records, prepare=prepare).start()
        return cls(store, writer, feedback_grace_s)

    def submit(self, record: LogRecord) -> bool:
        """Accept ``record`` without blocking; False when it was refused (it will not be stored: the
        caller must not acknowledge it)."""
        ok = self.writer.submit(record)
        if ok and isinstance(record, DecisionRecord):
            with self._recent_lock:
                self._recent[record.decision_id] = None
                if len(self._recent) > _RECENT_IDS:
                    self._recent.popitem(last=False)
        return ok

    def submit_durable(self, record: LogRecord) -> Future[None]:
        """Accept ``record``; the future resolves once it is fsynced (see ``SpooledWriter.submit_durable``)."""
        return self.writer.submit_durable(record)

    def degraded_reason(self) -> str | None:
        """None while the database and the spool's disk take writes; else what refuses them."""
        return self.writer.degraded_reason()

    def decision_known(self, decision_id: str) -> bool | None:
        """True: the decision exists (or this process accepted it and it is still on its way); False: it is
        known not to exist (not in the database, and its id is not one issued in the last
        ``feedback_grace_s`` seconds, when it could still be in another process's spool); None: cannot
        tell (the database is unavailable). Blocking (one primary-key read): call it off the loop."""
        with self._recent_lock:
            if decision_id in self._recent:
                return True
        if self.writer.degraded_reason() is not None:
            return None
        try:
            if self.store.decision_exists(decision_id):
                return True
        except Exception:  # noqa: BLE001 - cannot tell; the caller keeps the feedback
            return None
        issued = decision_id_time(decision_id)
        if issued is None:
            return False
        age = (datetime.now(UTC) - issued).total_seconds()
        return None if -60.0 <= age <= self.feedback_grace_s else False

    def stats(self) -> SpoolStats:
        return self.writer.stats()

    def close(self) -> SpoolStats:
        """Journal what was accepted, ship what the database takes (the rest stays in the spool for the
        next start), stop the writer and release the store. Blocking: call it off the loop."""
        try:
            stats = self.writer.close()
        finally:
            if isinstance(self.writer.store, ProcessSink):
                self.writer.store.close()
            self.store.close()
        if stats.dropped or stats.failed or stats.pending:
            log.warning("decision log closed with %s", stats)
        return stats


_RECENT_IDS = 200_000


def log_refused() -> ServiceError:
    """The 503 of a request whose decision the log refused (it would never be stored: not acknowledged)."""
    return ServiceError(
        503, "decision_log_unavailable",
        "the decision log cannot take this decision now (its database and spool disk refuse writes); retry later",
        headers={"Retry-After": "5"},
    )


async def enforce_retention(decision_log: DecisionLog, days: float, every_s: float = 3600.0) -> None:
    """Delete log rows older than ``days`` now and every ``every_s`` seconds (a background task)."""
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        try:
            deleted = await run_in_threadpool(decision_log.store.delete_before, cutoff)
            if any(deleted.values()):
                log.info("decision log retention (%g days): deleted %s", days, deleted)
        except Exception as exc:  # noqa: BLE001 - a database outage must not stop the task
            log.warning("decision log retention: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(every_s)


def embedder_spec(router: Router) -> str | None:
    spec = getattr(router.embedder, "spec", None)
    return str(spec) if spec is not None else None


def decision_record(
    decision: Decision,
    *,
    decision_id: str,
    prompt: str,
    constraints: Constraints,
    embedding: np.ndarray | None,
    embedder: str | None,
    tenant: str | None,
    user: str | None,
    propensity: float,
    source: str,
    redact: bool,
    arm: str | None = None,
) -> DecisionRecord:
    """The record of one decision (CPU work: hashes the prompt, copies the embedding)."""
    vector = None if embedding is None else np.asarray(embedding, dtype=np.float32).reshape(-1).tolist()
    return DecisionRecord.from_decision(
        decision, prompt=prompt, decision_id=decision_id, constraints=constraints, embedding=vector,
        embedder=embedder, tenant=tenant, user=user, arm=arm, propensity=propensity, source=source, redact=redact,
    )


def outcome_record(decision_id: str, result: CascadeResult) -> OutcomeRecord:
    """The outcome of a chat request: the answered model (or, if every attempt failed, the last one
    tried), its token counts and call latency, the cost of *all* attempts, and every attempt."""
    attempts = tuple(a.to_dict() for a in result.attempts)
    final = next((a for a in result.attempts if a.model == result.final_model and a.ok), None)
    last = result.attempts[-1] if result.attempts else None
    shown = final or last
    usage = (result.final_body or {}).get("usage")
    usage = usage if isinstance(usage, dict) else {}

    def tokens(key: str) -> int | None:
        v = usage.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    ok = result.final_body is not None and result.final_model is not None
    error = None if ok else "; ".join(f"{a.model}: {a.error}" for a in result.attempts) or "no model was called"
    return OutcomeRecord(
        decision_id=decision_id,
        model=result.final_model or (shown.model if shown else ""),
        ok=ok,
        error=error,
        input_tokens=tokens("prompt_tokens") if ok else None,
        output_tokens=tokens("completion_tokens") if ok else None,
        cost_usd=result.total_cost_usd,
        latency_ms=shown.latency_ms if shown else None,
        attempts=attempts,
    )
