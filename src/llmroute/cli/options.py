"""What the ``llmroute`` commands share, defined once: the common options (``--home``, ``--quiet``,
``--tracking-uri``, ``--catalog``, ``--since``/``--until``, ``--db``), settings loading, the error exit
and JSON output.

Rules: a command reports a user error with :func:`fail` (``error: ...`` on standard error, exit code 2,
nothing else printed); results go to standard output and progress to standard error. This module imports
only typer and the standard library at import time, so that ``--help`` stays fast; what it needs from the
rest of llmroute it imports inside the function that needs it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from llmroute.config import Settings

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="State directory (default: $LLMROUTE_HOME or ~/.llmroute).")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bars or progress lines on standard error (results still print).")
]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $LLMROUTE_TRACKING_URI, $MLFLOW_TRACKING_URI, else SQLite under the home).",
    ),
]
CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        envvar="LLMROUTE_CATALOG",
        help=(
            "Your catalog YAML, merged over the bundled one: an entry naming a known model overrides only the "
            "fields it gives (e.g. typical_latency_ms, prices, context_window); other entries add models."
        ),
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Only decisions made at or after this date/time (ISO; UTC unless a zone is given)."),
]
UntilOpt = Annotated[
    str | None,
    typer.Option("--until", help="Only decisions made before this date/time (ISO; UTC unless a zone is given)."),
]
DecisionLogOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Decision log URL (sqlite:///path or postgresql://...); default: <LLMROUTE_HOME>/decisions.sqlite.",
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Exit the command with ``code`` (2: bad input) after printing ``error: message`` on standard error."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def need_file(path: Path, option: str) -> None:
    """Fail early (before anything slow) when a file an option names does not exist."""
    if not path.exists():
        fail(f"{option}: {path} does not exist")


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress output in this process or the ones it starts (:mod:`llmroute.progress`)."""
    if quiet:
        from llmroute.progress import set_quiet as quiet_progress

        quiet_progress(True)


def load_cli_settings(
    home: Path | None = None, *, embedder: str | None = None, tracking_uri: str | None = None
) -> Settings:
    """The settings of one command: the environment (``LLMROUTE_*``) overridden by the options given
    (an option left at None keeps the environment's value)."""
    from llmroute.config import load_settings

    return load_settings(home=home, embedder=embedder, tracking_uri=tracking_uri)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on standard output (values JSON cannot hold are printed as text)."""
    typer.echo(json.dumps(data, indent=1, default=str))


def parse_since(text: str | None, option: str = "--since") -> datetime | None:
    """'2026-11-01' or an ISO datetime; a value without a zone is UTC. A bad value is a usage error naming
    ``option``."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected a date like 2026-11-01 or an ISO datetime like 2026-11-01T12:00:00+00:00, got {text!r}",
            param_hint=option,
        ) from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def existing_decision_log(db: str | None, home: Path | None = None) -> str:
    """The decision log a command reads: ``--db``, else ``decisions.sqlite`` under the home. A SQLite file
    that does not exist is an error (opening it would create an empty log), naming the file."""
    url = db or default_decision_log(home)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        fail(f"no decision log at {url.removeprefix('sqlite:///')} (give --db)")
    return url


def default_decision_log(home: Path | None = None) -> str:
    """The URL of ``decisions.sqlite`` under the home (``--home``, else $LLMROUTE_HOME or ~/.llmroute)."""
    from llmroute.data.decision_log.store import default_db_url

    return default_db_url(load_cli_settings(home).home)
