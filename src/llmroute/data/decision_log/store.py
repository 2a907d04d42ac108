"""The decision log's store: SQLite (WAL) by default, PostgreSQL by URL, through SQLAlchemy.

Writes are idempotent: every record carries its own key (decision id; decision id for the one
outcome of a decision; feedback id), and inserts skip keys already stored, so a retried batch or
two workers writing the same record never duplicate rows. Decisions, outcomes and feedback are not
tied by foreign keys: they may arrive in any order, from different workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from llmroute.data.decision_log import rollup, rows, tables
from llmroute.data.decision_log.bulk import BulkInsert
from llmroute.data.decision_log.migrate import create_log_engine, upgrade_to_head
from llmroute.data.decision_log.records import DecisionRecord, FeedbackRecord, LogRecord, OutcomeRecord

if TYPE_CHECKING:
    import pyarrow as pa

DB_FILENAME = "decisions.sqlite"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe to print, log and record (an unparsable URL
    is not shown at all: it could hold a password in a place the parser does not know)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable URL>"


def default_db_url(home: Path) -> str:
    """``sqlite:///<home>/decisions.sqlite``."""
    return f"sqlite:///{Path(home) / DB_FILENAME}"


class DecisionLogStore:
    """Reads and writes the decision log at ``url``; migrates the schema to head when opened.

    ``migrate=False`` opens without touching the schema (the database must be at head).
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_log_engine(url)
        self._statements: dict[str, Any] = {}  # inserts (BulkInsert) and rollup upserts, built once per store
        if migrate:
            upgrade_to_head(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> DecisionLogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def _bulk(self, table: sa.Table, key: str) -> BulkInsert:
        """The table's :class:`BulkInsert`, made once per store (on the engine's dialect, whose JSON
        serializer it uses)."""
        bulk = self._statements.get(table.name)
        if bulk is None:
            bulk = self._statements[table.name] = BulkInsert(self.engine.dialect, table, key)
        return bulk

    def write_many(self, records: Iterable[LogRecord]) -> int:
        """Write decisions, outcomes and feedback in one transaction; returns how many were given.

        The records actually inserted (not skipped as duplicates) are added to the dashboard's
        rollups in the same transaction (:mod:`llmroute.data.decision_log.rollup`), aggregated in
        memory first: one upsert per (bucket, tenant, model) of the batch, not one per record."""
        d: list[DecisionRecord] = []
        o: list[OutcomeRecord] = []
        f: list[FeedbackRecord] = []
        nul = self.dialect == "postgresql"
        for r in records:
            r = rows.storable_record(r, nul)  # rows and rollups alike (PostgreSQL cannot hold NUL)
            if isinstance(r, DecisionRecord):
                d.append(r)
            elif isinstance(r, OutcomeRecord):
                o.append(r)
            elif isinstance(r, FeedbackRecord):
                f.append(r)
            else:
                raise TypeError(f"not a decision-log record: {type(r).__name__}")
        with self.engine.begin() as conn:
            new_d = self._insert_new(conn, tables.decisions, "decision_id", d, rows.decision_row)
            new_o = self._insert_new(conn, tables.outcomes, "decision_id", o, rows.outcome_row)
            new_f = self._insert_new(conn, tables.feedback, "feedback_id", f, rows.feedback_row)
            rollup.roll_up_inserted(conn, self.dialect, new_d, new_o, new_f, statements=self._statements)
        return len(d) + len(o) + len(f)

    def _insert_new(self, conn: sa.Connection, table: sa.Table, key: str, batch: list[Any],
                    to_row: Any) -> list[Any]:
        """Insert ``batch`` skipping keys already stored (or repeated in the batch); returns the records inserted."""
        if not batch:
            return []
        unique: dict[str, Any] = {}
        for r in batch:
            unique.setdefault(getattr(r, key), r)
        # text is storable already (rows.storable_record); the rows make their JSON values storable
        nul = self.dialect == "postgresql"
        bulk = self._bulk(table, key)
        new = bulk.insert(conn, [bulk.row(to_row(r, self.dialect, nul)) for r in unique.values()])
        return [r for k, r in unique.items() if k in new]

    def delete_before(self, cutoff: datetime) -> dict[str, int]:
        """Delete decisions, outcomes and feedback created before ``cutoff`` (the retention setting);
        returns rows deleted per table."""
        at = rows.to_db_time(cutoff, self.dialect)
        out: dict[str, int] = {}
        with self.engine.begin() as conn:
            for t in (tables.feedback, tables.outcomes, tables.decisions):
                out[t.name] = int(conn.execute(sa.delete(t).where(t.c.created_at < at)).rowcount or 0)
        return out

    # -- reading ---------------------------------------------------------------------------------

    def decision_exists(self, decision_id: str) -> bool:
        """True when a decision with this id is stored (one primary-key lookup)."""
        d = tables.decisions
        with self.engine.connect() as conn:
            return conn.execute(sa.select(d.c.decision_id).where(d.c.decision_id == decision_id)).first() is not None

    def _since(self, since: datetime | None) -> datetime | None:
        return None if since is None else rows.to_db_time(since, self.dialect)

    def iter_decision_rows(self, since: datetime | None = None, batch_size: int = 1000,
                           until: datetime | None = None) -> Iterator[list[dict[str, Any]]]:
        """Raw decision rows made in ``[since, until)`` in (created_at, decision_id) order,
        ``batch_size`` at a time (keyset paging)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        d = tables.decisions
        last: tuple[Any, str] | None = None
        since_db, until_db = self._since(since), self._since(until)
        while True:
            q = sa.select(d).order_by(d.c.created_at, d.c.decision_id).limit(batch_size)
            if since_db is not None:
                q = q.where(d.c.created_at >= since_db)
            if until_db is not None:
                q = q.where(d.c.created_at < until_db)
            if last is not None:
                q = q.where(sa.or_(d.c.created_at > last[0],
                                   sa.and_(d.c.created_at == last[0], d.c.decision_id > last[1])))
            with self.engine.connect() as conn:
                batch = [dict(m) for m in conn.execute(q).mappings()]
            if not batch:
                return
            yield batch
            last = (batch[-1]["created_at"], batch[-1]["decision_id"])
            if len(batch) < batch_size:
                return

    def iter_decisions(self, since: datetime | None = None, batch_size: int = 1000,
                       ) -> Iterator[list[DecisionRecord]]:
        """Decisions made at or after ``since``, oldest first, in lists of at most ``batch_size``."""
        for batch in self.iter_decision_rows(since, batch_size):
            yield [rows.decision_from_row(m) for m in batch]

    def outcomes_for(self, decision_ids: Sequence[str]) -> dict[str, OutcomeRecord]:
        """The outcome of each given decision that has one."""
        if not decision_ids:
            return {}
        o = tables.outcomes
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(o).where(o.c.decision_id.in_(list(decision_ids)))).mappings()
            return {m["decision_id"]: rows.outcome_from_row(m) for m in found}

    def latest_feedback_for(self, decision_ids: Sequence[str]) -> dict[str, FeedbackRecord]:
        """The latest feedback (by created_at, then feedback id) of each given decision that has any."""
        if not decision_ids:
            return {}
        fb = tables.feedback
        q = (sa.select(fb).where(fb.c.decision_id.in_(list(decision_ids)))
             .order_by(fb.c.decision_id, fb.c.created_at, fb.c.feedback_id))
        out: dict[str, FeedbackRecord] = {}
        with self.engine.connect() as conn:
            for m in conn.execute(q).mappings():
                out[m["decision_id"]] = rows.feedback_from_row(m)  # later rows overwrite earlier ones
        return out

    def count_decisions(self, since: datetime | None = None) -> int:
        """How many decisions were made at or after ``since`` (all of them when None)."""
        d = tables.decisions
        q = sa.select(sa.func.count()).select_from(d)
        since_db = self._since(since)
        if since_db is not None:
            q = q.where(d.c.created_at >= since_db)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def counts(self) -> dict[str, int]:
        """Rows per table: ``{"decisions": n, "outcomes": n, "feedback": n}``."""
        with self.engine.connect() as conn:
            return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                    for t in (tables.decisions, tables.outcomes, tables.feedback)}

    def joined(self, since: datetime | None = None, batch_size: int = 1000,
               until: datetime | None = None) -> Iterator[pa.RecordBatch]:
        """Decision + outcome + latest feedback, one row per decision made in ``[since, until)``, as
        Arrow record batches (``.to_pandas()`` for a DataFrame). Columns:
        :data:`llmroute.data.decision_log.export.JOINED_SCHEMA`."""
        from llmroute.data.decision_log.export import joined_batches  # here: it imports pyarrow

        return joined_batches(self, since, batch_size, until)

    def export_parquet(self, path: str | Path, since: datetime | None = None, batch_size: int = 5000) -> int:
        """Stream :meth:`joined` into a Parquet file batch by batch; returns the number of rows written."""
        from llmroute.data.decision_log.export import export_parquet  # here: it imports pyarrow

        return export_parquet(self, path, since, batch_size)
