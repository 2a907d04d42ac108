"""Opening an existing decision log for reading (retraining, off-policy evaluation, the promotion gate).

:func:`open_decision_log` never creates or migrates anything: a URL that is not a database URL, a SQLite
file that does not exist, a database that cannot be read or a missing driver is a
:class:`DecisionLogError` whose message names the (masked) URL and what was expected.
"""

from __future__ import annotations

from pathlib import Path

from llmroute.data.decision_log.store import DecisionLogStore, mask_url

__all__ = ["DecisionLogError", "open_decision_log"]


class DecisionLogError(ValueError):
    """The decision log cannot be opened or read (the message names the masked URL)."""


def open_decision_log(dsn: str) -> DecisionLogStore:
    """Open the log at ``dsn`` without creating anything; errors name the (masked) URL and what was expected."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        url = make_url(dsn)
    except ArgumentError as exc:
        raise DecisionLogError(
            f"--from-production {dsn!r} is not a database URL; expected e.g. sqlite:///path/decisions.sqlite "
            "or postgresql://user:password@host/db"
        ) from exc
    shown = mask_url(dsn)
    if url.get_backend_name() == "sqlite":
        path = url.database
        if not path or path == ":memory:" or not Path(path).exists():
            raise DecisionLogError(f"no decision log at {shown}: the SQLite file {path!r} does not exist")
    try:
        store = DecisionLogStore(dsn, migrate=False)
        store.counts()
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DecisionLogError(f"cannot read the decision log at {shown}: {detail}") from exc
    except ModuleNotFoundError as exc:
        raise DecisionLogError(f"cannot open the decision log at {shown}: database driver missing ({exc.name})") from exc
    return store
