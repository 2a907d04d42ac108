"""``llmroute logs ...``: the production decision log. Wire with ``register(app)`` in cli/root.py."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

logs_app = typer.Typer(
    help="The production decision/outcome log (decisions, outcomes, feedback).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ExportFormat(StrEnum):
    """Output formats of ``llmroute logs export``."""

    parquet = "parquet"


def parse_since(text: str | None) -> datetime | None:
    """'2026-11-01' or an ISO datetime; a value without a zone is UTC."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected a date like 2026-11-01 or an ISO datetime like 2026-11-01T12:00:00+00:00, got {text!r}",
            param_hint="--since",
        ) from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _default_db_url() -> str:
    from llmroute.config import load_settings
    from llmroute.data.decision_log.store import default_db_url

    return default_db_url(load_settings().home)


@logs_app.callback()
def _logs() -> None:
    """The production decision/outcome log (decisions, outcomes, feedback)."""


@logs_app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    db: Annotated[str | None, typer.Option(
        "--db",
        help="Log database URL (sqlite:///path or postgresql://...); default: <LLMROUTE_HOME>/decisions.sqlite.",
    )] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = ExportFormat.parquet,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only decisions made at or after this date/time (ISO; UTC unless a zone is given).",
    )] = None,
    batch_size: Annotated[int, typer.Option(help="Decisions per batch (memory bound).", min=1)] = 5000,
) -> None:
    """Export decisions joined with their outcome and latest feedback (one row per decision)."""
    from llmroute.data.decision_log.store import DecisionLogStore

    since_dt = parse_since(since)
    url = db or _default_db_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        typer.echo(f"error: no decision log at {url.removeprefix('sqlite:///')} (give --db)", err=True)
        raise typer.Exit(2)
    assert fmt is ExportFormat.parquet
    with DecisionLogStore(url) as store:
        n = store.export_parquet(out, since=since_dt, batch_size=batch_size)
    typer.echo(f"wrote {n} decisions to {out}")


@logs_app.command("rollup")
def rollup_command(
    db: Annotated[str | None, typer.Option(
        "--db",
        help="Log database URL (sqlite:///path or postgresql://...); default: <LLMROUTE_HOME>/decisions.sqlite.",
    )] = None,
    batch_size: Annotated[int, typer.Option(help="Decisions per batch (memory bound).", min=1)] = 5000,
) -> None:
    """Rebuild the dashboard's rollups from the log's rows.

    The service keeps the rollups up to date as it writes; run this once for decisions logged before the dashboard existed (schema revision 0006), or to recompute them exactly.

    Stop the services that write to this log first: records written during the rebuild may be counted twice or not at all.
    """
    from llmroute.data.decision_log.rollup import rebuild
    from llmroute.data.decision_log.store import DecisionLogStore, mask_url

    url = db or _default_db_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        typer.echo(f"error: no decision log at {url.removeprefix('sqlite:///')} (give --db)", err=True)
        raise typer.Exit(2)
    with DecisionLogStore(url) as store:
        total = store.count_decisions()
        typer.echo(f"rebuilding the rollups of {mask_url(url)} from {total:,} decisions", err=True)

        def progress(done: int) -> None:
            typer.echo(f"  {done:,}/{total:,} decisions", err=True)

        n = rebuild(store, batch_size, progress)
    typer.echo(f"rolled up {n:,} decisions")


def register(app: typer.Typer) -> None:
    """Add the ``logs`` command group to the main CLI."""
    app.add_typer(logs_app, name="logs")
