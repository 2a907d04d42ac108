"""Engines and schema migrations for the decision log.

:func:`upgrade_to_head` runs the Alembic migrations shipped in ``migrations/`` on a database URL.
Migrations only add (tables, columns, indexes): an upgrade never drops logged rows. The version
is kept in its own table (:data:`VERSION_TABLE`), so the log can share a PostgreSQL database
with other Alembic-managed schemas (e.g. MLflow's). On PostgreSQL, concurrent workers starting
together serialise on an advisory lock, so the migration runs once.
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

VERSION_TABLE = "llmroute_decision_log_version"
HEAD = "0007"  # 0007 follows 0004, which follows 0005, which follows 0006 (numbers were assigned per branch)
_MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK_KEY = 0x6C6D726F757465  # "lmroute"
_JSON = json.JSONEncoder(check_circular=False, separators=(",", ":"))
"""The JSON columns' serializer: what ``json.dumps`` writes, without the spaces, with one encoder made
once (``json.dumps`` with any option builds an encoder per call)."""


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` use psycopg 3 (the driver llmroute depends on)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_log_engine(url: str) -> Engine:
    """An engine for the log; SQLite gets WAL, ``synchronous=NORMAL`` and a 30 s busy timeout.

    WAL + NORMAL: a committed batch survives a process crash (SIGKILL); after an OS crash or power
    loss the last committed transactions may roll back, never corrupt the file. JSON columns are
    written compact (:data:`_JSON`); reading is ``json.loads`` as before.
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  json_serializer=_JSON.encode)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # a database that does not answer must not hold a writer (or a /feedback lookup) for minutes
    connect_args = {} if "connect_timeout" in url else {"connect_timeout": 5}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args, json_serializer=_JSON.encode)


def _config(connection: sa.Connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade_to_head(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Bring the log's schema to ``revision`` (default: the newest), creating it if absent."""
    from alembic import command

    engine = create_log_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            command.upgrade(_config(conn), revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def current_revision(url_or_engine: str | Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    engine = create_log_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
