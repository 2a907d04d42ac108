"""The production decision/outcome log: every routing decision, its outcome and later feedback.

* :mod:`.records`: the frozen records (:class:`DecisionRecord`, :class:`OutcomeRecord`, :class:`FeedbackRecord`).
* :mod:`.store`: :class:`DecisionLogStore` (SQLite WAL by default, PostgreSQL by URL; migrated at open).
* :mod:`.writer`: :class:`DecisionLogWriter`, the non-blocking background batch writer (loss bounds documented there).
* :mod:`.export`: the joined Arrow view and Parquet export.
* :mod:`.migrate`: Alembic migrations (``migrations/``) run programmatically.
* :mod:`.benchmark_rows`: logged calls with feedback as benchmark-schema rows (retraining).
"""

from llmroute.data.decision_log.migrate import current_revision, upgrade_to_head
from llmroute.data.decision_log.records import (
    DecisionRecord,
    FeedbackRecord,
    LoggedCandidate,
    LogRecord,
    OutcomeRecord,
    prompt_sha256,
)
from llmroute.data.decision_log.store import DecisionLogStore, default_db_url, mask_url
from llmroute.data.decision_log.writer import DecisionLogWriter, WriterStats

__all__ = [
    "DecisionLogStore",
    "DecisionLogWriter",
    "DecisionRecord",
    "FeedbackRecord",
    "LogRecord",
    "LoggedCandidate",
    "OutcomeRecord",
    "mask_url",
    "WriterStats",
    "current_revision",
    "default_db_url",
    "prompt_sha256",
    "upgrade_to_head",
]
