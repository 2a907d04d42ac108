"""``llmroute logs ...``: the production decision log. Wire with ``register(app)`` in cli/root.py."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from llmroute.cli.options import DecisionLogOpt, SinceOpt, existing_decision_log, parse_since

logs_app = typer.Typer(
    help="The production decision/outcome log (decisions, outcomes, feedback).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class ExportFormat(StrEnum):
    """Output formats of ``llmroute logs export``."""

    parquet = "parquet"


@logs_app.callback()
def _logs() -> None:
    """The production decision/outcome log (decisions, outcomes, feedback)."""


@logs_app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    db: DecisionLogOpt = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = ExportFormat.parquet,
    since: SinceOpt = None,
    batch_size: Annotated[int, typer.Option(help="Decisions per batch (memory bound).", min=1)] = 5000,
) -> None:
    """Export decisions joined with their outcome and latest feedback (one row per decision)."""
    since_dt = parse_since(since)
    url = existing_decision_log(db)
    from llmroute.data.decision_log.store import DecisionLogStore

    assert fmt is ExportFormat.parquet
    with DecisionLogStore(url) as store:
        n = store.export_parquet(out, since=since_dt, batch_size=batch_size)
    typer.echo(f"wrote {n} decisions to {out}")


@logs_app.command("rollup")
def rollup_command(
    db: DecisionLogOpt = None,
    batch_size: Annotated[int, typer.Option(help="Decisions per batch (memory bound).", min=1)] = 5000,
) -> None:
    """Rebuild the dashboard's rollups from the log's rows.

    The service keeps the rollups up to date as it writes; run this once for decisions logged before the dashboard existed (schema revision 0006), or to recompute them exactly.

    Stop the services that write to this log first: records written during the rebuild may be counted twice or not at all.
    """
    from llmroute.data.decision_log.rollup import rebuild
    from llmroute.data.decision_log.store import DecisionLogStore, mask_url

    url = existing_decision_log(db)
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
