"""Registry commands of the `llmroute` CLI (promote, rollback, models) and the train command's MLflow hook.
(Loading a ``--model models:/...`` is :mod:`llmroute.cli.loading`.)

MLflow is imported inside the commands only, so `llmroute --help` and the other commands stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmroute.cli.options import HomeOpt, TrackingOpt, fail, load_cli_settings, parse_since
from llmroute.offpolicy import DEFAULT_TOLERANCE, MIN_MATCHES

if TYPE_CHECKING:
    from llmroute.config import Settings
    from llmroute.router.router import Router

def track_training(
    router: Router,
    folder: Path,
    logs: Path,
    settings: Settings,
    test_logs: Path | None = None,
    bootstrap: int = 200,
) -> None:
    """After `llmroute train`: evaluate on ``test_logs`` (if given), then log, register and alias the router."""
    from llmroute.training.tracking import TrackingError, log_training_run, resolve_tracking_uri

    report_dir = None
    if test_logs is not None:
        from llmroute.experiments.report import run_evaluation
        from llmroute.router.answer_scorer import scorer_in

        report_dir = folder / "evaluation"
        run_evaluation(router, test_logs, report_dir, settings.cache_dir / "embeddings.sqlite", n_boot=bootstrap,
                       scorer=scorer_in(folder, router.embedder))
        typer.echo(f"evaluated on {test_logs}: report in {report_dir}")
    try:
        tracked = log_training_run(router, folder, logs, None, settings, report_dir)
    except TrackingError as exc:
        fail(f"{exc} (the router itself is saved in {folder}; rerun with --no-track to skip tracking)")
    typer.echo(
        f"MLflow run {tracked.run_id} in {resolve_tracking_uri(settings)}; registered as "
        f"models:/{settings.registered_model}/{tracked.version} with alias 'challenger' "
        f"(router version {tracked.router.version})"
    )


def promote_cmd(
    logs: Annotated[
        Path | None, typer.Option("--logs", help="Held-out logs both routers are scored on (Parquet; --gate benchmark).")
    ] = None,
    gate: Annotated[
        str, typer.Option("--gate", help="'benchmark' (held-out logs) or 'offpolicy' (logged production traffic).")
    ] = "benchmark",
    from_production: Annotated[
        str | None,
        typer.Option("--from-production", help="Decision log URL for --gate offpolicy (sqlite:///... or postgresql://...)."),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="--gate offpolicy: decisions at or after this date/time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="--gate offpolicy: decisions before this date/time.")] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="--gate offpolicy: quality loss the lower interval end may show.", min=0.0)
    ] = DEFAULT_TOLERANCE,
    min_matches: Annotated[
        int, typer.Option("--min-matches", help="--gate offpolicy: logged decisions that must match the challenger's choice.", min=1)
    ] = MIN_MATCHES,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate refuses (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why a forced promotion is justified.")] = None,
    home: HomeOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Move 'champion' to the challenger if it passes the promotion gate.

    --gate benchmark (default): on the same held-out logs, the challenger's AIQ (default rule) must be
    strictly higher and its target attainment not worse (it meets its default target, or falls short by no
    more than the champion). --gate offpolicy --from-production URL: on logged production traffic, the
    lower end of the 95% interval of the paired doubly-robust quality difference (challenger - champion)
    must be at least -tolerance, the challenger must be better in DR quality or cheaper in DR cost, and at
    least --min-matches logged decisions must have served the challenger's choice.
    """
    from llmroute.data.decision_log.opening import DecisionLogError
    from llmroute.data.schema import LogValidationError
    from llmroute.router.embedder import EmbedderMismatchError
    from llmroute.training.registry import GATES, OffPolicyGateOptions, RegistryError, promote

    if gate not in GATES:
        fail(f"--gate must be one of {', '.join(GATES)}, got {gate!r}")
    if gate == "benchmark" and logs is None:
        fail("--gate benchmark needs --logs (held-out benchmark logs)")
    if gate == "offpolicy" and not from_production:
        fail("--gate offpolicy needs --from-production (the decision log URL)")
    opts = None
    if gate == "offpolicy":
        assert from_production is not None
        opts = OffPolicyGateOptions(
            from_production, parse_since(since), parse_since(until, "--until"), tolerance, min_matches
        )
    settings = load_cli_settings(home, tracking_uri=tracking_uri)
    try:
        result = promote(settings, logs, force=force, reason=reason, echo=typer.echo, gate=gate, offpolicy=opts)
    except (RegistryError, EmbedderMismatchError, LogValidationError, DecisionLogError, FileNotFoundError,
            ValueError) as exc:
        fail(str(exc))
    typer.echo(result.message)
    if not result.promoted:
        raise typer.Exit(1)


def rollback_cmd(home: HomeOpt = None, tracking_uri: TrackingOpt = None) -> None:
    """Move 'champion' back to the previous champion."""
    from llmroute.training.registry import RegistryError, rollback

    try:
        result = rollback(load_cli_settings(home, tracking_uri=tracking_uri))
    except RegistryError as exc:
        fail(str(exc))
    typer.echo(result.message)


def models_cmd(home: HomeOpt = None, tracking_uri: TrackingOpt = None) -> None:
    """List registered router versions with aliases, key metrics and data fingerprints."""
    from llmroute.artifacts.registry import RegistryError, list_models

    settings = load_cli_settings(home, tracking_uri=tracking_uri)
    try:
        rows = list_models(settings)
    except RegistryError as exc:
        fail(str(exc))

    def f(v: Any) -> str:
        return "—" if v is None else f"{v:.4f}"

    typer.echo(
        f"{'version':>7}  {'aliases':<22} {'created (UTC)':<19}  {'val AIQ':>7} {'test AIQ':>8} "
        f"{'gate AIQ':>8}  {'prompts':>7}  data sha256"
    )
    for r in rows:
        typer.echo(
            f"{r.version:>7}  {','.join(r.aliases) or '-':<22} {r.created:<19}  {f(r.val_aiq):>7} "
            f"{f(r.test_aiq):>8} {f(r.promotion_aiq):>8}  {r.data_prompts if r.data_prompts is not None else '—':>7}  "
            f"{(r.data_sha256 or '—')[:16]}"
        )
    if not rows:
        typer.echo(f"no versions of '{settings.registered_model}' yet")


def register(app: typer.Typer) -> None:
    """Add the registry commands to the main app."""
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("models")(models_cmd)
