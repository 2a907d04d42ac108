"""The service's side of the decision log (:mod:`llmroute.data.decision_log`).

The lifespan opens a :class:`DecisionLog` (store + background writer) off the event loop and closes
it at shutdown, which writes everything still queued. Request handlers build records in the compute
pool (:func:`decision_record`) or on the loop when they are trivial (:func:`outcome_record`) and
hand them over with :meth:`DecisionLog.submit`, which never blocks; the database is written only by
the writer's thread. Records refused because the queue is full are counted (``dropped``, see
``/metrics``), never waited for.

The embedding of a routed prompt is logged without embedding it twice: :class:`CapturingEmbedder`
wraps the served router's embedder and remembers, per thread, what the last ``encode`` returned;
the compute thread that just routed the prompt reads it back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmroute.data.decision_log import (
    DecisionLogStore,
    DecisionLogWriter,
    DecisionRecord,
    LogRecord,
    OutcomeRecord,
    WriterStats,
    default_db_url,
    mask_url,
)
from llmroute.router.decision import Constraints, Decision
from llmroute.router.router import Router
from llmroute.serving.cascade import CascadeResult

log = logging.getLogger("llmroute.serving")


def resolve_log_url(configured: str | None, home: Any) -> str | None:
    """The log's URL: ``configured``, or the default SQLite file under ``home``; None when logging is off."""
    if configured is None:
        return default_db_url(home)
    if configured.strip().lower() in ("", "off"):
        return None
    return configured


class DecisionLog:
    """The store and its background writer, opened together and closed together."""

    def __init__(self, store: DecisionLogStore, writer: DecisionLogWriter) -> None:
        self.store = store
        self.writer = writer

    @classmethod
    def open(cls, url: str, redact: bool) -> DecisionLog:
        """Open (and migrate) the store at ``url`` and start the writer. Blocking: call it off the loop."""
        try:
            store = DecisionLogStore(url)
        except Exception as exc:
            raise RuntimeError(
                f"cannot open the decision log at {mask_url(url)}: {type(exc).__name__}: {exc} "
                "(set LLMROUTE_SERVE_DECISION_LOG_URL to another database, or to 'off' to serve without one)"
            ) from exc
        log.info("decision log: %s%s", mask_url(url), " (prompts redacted)" if redact else "")
        return cls(store, DecisionLogWriter(store, redact=redact).start())

    def submit(self, record: LogRecord) -> bool:
        """Queue ``record`` without blocking; False when it was refused (counted as dropped)."""
        return self.writer.submit(record)

    def stats(self) -> WriterStats:
        return self.writer.stats()

    def close(self) -> WriterStats:
        """Write what is queued, stop the writer and release the store. Blocking: call it off the loop."""
        try:
            stats = self.writer.close()
        finally:
            self.store.close()
        if stats.dropped or stats.failed or stats.pending:
            log.warning("decision log closed with %s", stats)
        return stats


class CapturingEmbedder:
    """Wraps an embedder; :meth:`last` returns what ``encode`` last returned on the calling thread."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._local = threading.local()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self.inner.encode(texts)
        self._local.last = out
        return out

    def forget(self) -> None:
        self._local.last = None

    def remember(self, embedding: np.ndarray | None) -> None:
        """Make ``embedding`` what :meth:`last` returns on this thread (a request routed in a batch
        by another thread gets its own row back this way)."""
        self._local.last = embedding

    def last(self) -> np.ndarray | None:
        out: np.ndarray | None = getattr(self._local, "last", None)
        return out

    def __getattr__(self, name: str) -> Any:  # spec, fingerprint, ... of the wrapped embedder
        return getattr(self.inner, name)


def capture_embeddings(router: Router) -> Router:
    """Wrap ``router``'s embedder in a :class:`CapturingEmbedder` (once); returns ``router``."""
    if not isinstance(router.embedder, CapturingEmbedder):
        router.embedder = CapturingEmbedder(router.embedder)  # type: ignore[assignment]
    return router


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
