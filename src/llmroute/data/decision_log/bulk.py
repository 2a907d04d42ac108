"""Many rows into one table as few statements, through the DBAPI: the decision log's batch writes.

:class:`BulkInsert` writes ``INSERT INTO t (...) VALUES (...), (...), ... ON CONFLICT (key) DO
NOTHING RETURNING key`` with positional parameters: rows go in as tuples, each value converted by
the bind processor SQLAlchemy itself would apply to its column on this dialect (SQLite's datetime
text, the JSON serializer, float coercion), worked out once per table. The guarantee is the one of
``conn.execute(insert(t).on_conflict_do_nothing(...).returning(key), rows)``: the same stored
values, the same keys returned (the rows actually inserted, not the ones skipped as already
stored), on the caller's connection and transaction; without SQLAlchemy's per-row parameter
processing, which cost about as much as the database's own insert. :class:`BulkAdd` is the
rollups' ``INSERT ... ON CONFLICT (keys) DO UPDATE SET m = t.m + excluded.m``, all of a batch's
keys in one statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

_MAX_PARAMS = {"sqlite": 32_000, "postgresql": 60_000}
"""Parameters a statement may carry (SQLite >= 3.32 allows 32,766; PostgreSQL's protocol 65,535)."""


class BulkInsert:
    """Insert-or-skip of rows (tuples in :attr:`columns` order) into ``table``, keyed by ``key``.

    Only SQLite and PostgreSQL (both have ``ON CONFLICT ... DO NOTHING RETURNING``)."""

    def __init__(self, dialect: sa.Dialect, table: sa.Table, key: str) -> None:
        self._setup(dialect, table)
        q = dialect.identifier_preparer.quote
        self.key_index = self.columns.index(key)
        self._tail = f" ON CONFLICT ({q(key)}) DO NOTHING RETURNING {q(key)}"

    def _setup(self, dialect: sa.Dialect, table: sa.Table) -> None:
        if dialect.name not in _MAX_PARAMS:
            raise ValueError(f"BulkInsert supports SQLite and PostgreSQL, not {dialect.name}")
        self.table = table
        self.columns: tuple[str, ...] = tuple(c.name for c in table.columns)
        procs: list[Callable[[Any], Any] | None] = []
        marks: list[str] = []
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        for c in table.columns:
            impl = c.type.dialect_impl(dialect)
            procs.append(impl.bind_processor(dialect))
            if dialect.name == "postgresql" and isinstance(impl, sa.JSON):
                marks.append(f"CAST({mark} AS {impl.compile(dialect=dialect)})")  # what psycopg's bind casts say
            else:
                marks.append(mark)
        self._procs = tuple((i, p) for i, p in enumerate(procs) if p is not None)
        self._group = "(" + ", ".join(marks) + ")"
        preparer = dialect.identifier_preparer
        self._head = (f"INSERT INTO {preparer.format_table(table)} "
                      f"({', '.join(preparer.quote(c) for c in self.columns)}) VALUES ")
        self._tail = ""
        limit = _MAX_PARAMS[dialect.name]
        if dialect.name == "sqlite" and getattr(dialect.dbapi, "sqlite_version_info", (3, 32)) < (3, 32):
            limit = 999  # older SQLite libraries allow 999 parameters a statement
        self.rows_per_statement = max(1, limit // len(self.columns))
        self._sql: dict[int, str] = {}

    def _statement(self, n: int) -> str:
        sql = self._sql.get(n)
        if sql is None:
            sql = self._head + ", ".join([self._group] * n) + self._tail
            if len(self._sql) < 64:  # batch sizes repeat; keep a few
                self._sql[n] = sql
        return sql

    def row(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The tuple of a row given as ``{column: value}`` (a missing column is NULL)."""
        return tuple(values.get(c) for c in self.columns)

    def insert(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> set[Any]:
        """Insert ``rows`` (keys distinct) on ``conn``, skipping keys already stored; returns the keys inserted."""
        return self._execute(conn, rows, returning=True)

    def _execute(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]], returning: bool) -> set[Any]:
        inserted: set[Any] = set()
        step = self.rows_per_statement
        procs = self._procs
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            params: list[Any] = []
            for r in chunk:
                if procs:
                    values = list(r)
                    for i, p in procs:  # SQLAlchemy calls them on None too (JSON: its own rule for None)
                        values[i] = p(values[i])
                    params.extend(values)
                else:
                    params.extend(r)
            result = conn.exec_driver_sql(self._statement(len(chunk)), tuple(params))
            if returning:
                inserted.update(row[0] for row in result)
        return inserted


class BulkAdd(BulkInsert):
    """Add rows' ``measures`` to the stored rows with the same ``keys`` (a new key is inserted): the
    rollups' upsert. Rows' keys must be distinct (one statement may not update a row twice)."""

    def __init__(self, dialect: sa.Dialect, table: sa.Table, keys: Sequence[str], measures: Sequence[str]) -> None:
        self._setup(dialect, table)
        q = dialect.identifier_preparer.quote
        name = dialect.identifier_preparer.format_table(table)
        sets = ", ".join(f"{q(m)} = {name}.{q(m)} + excluded.{q(m)}" for m in measures)
        self._tail = f" ON CONFLICT ({', '.join(q(k) for k in keys)}) DO UPDATE SET {sets}"

    def add(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Upsert ``rows`` (tuples in :attr:`columns` order) on ``conn``, in the order given."""
        self._execute(conn, rows, returning=False)
