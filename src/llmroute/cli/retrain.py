"""``llmroute retrain`` (train from the production decision log) and ``llmroute offpolicy`` (evaluate a
router on it). Wire with ``register(app)`` in cli/root.py. MLflow and the models load inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmroute.cli.options import (
    HomeOpt,
    SinceOpt,
    TrackingOpt,
    UntilOpt,
    fail,
    load_cli_settings,
    parse_since,
)

if TYPE_CHECKING:
    from llmroute.config import Settings
    from llmroute.router.router import Router

DsnOpt = Annotated[
    str,
    typer.Option(
        "--from-production",
        help="The decision log's SQLAlchemy URL: sqlite:///path/decisions.sqlite or postgresql://user:pw@host/db.",
    ),
]


def retrain_cmd(
    from_production: DsnOpt,
    since: SinceOpt = None,
    until: UntilOpt = None,
    benchmark_logs: Annotated[
        list[Path] | None,
        typer.Option("--benchmark-logs", help="Benchmark logs (Parquet, llmroute schema) to merge in (repeatable)."),
    ] = None,
    home: HomeOpt = None,
    tracking_uri: TrackingOpt = None,
    embedder: Annotated[str | None, typer.Option(help="Embedder (default: as for `llmroute train`).")] = None,
    success_threshold: Annotated[float, typer.Option(help="A call meets the target when its quality is at least this.")] = 0.5,
    target: Annotated[str, typer.Option(help="Default quality target: '95%' of the best model or an absolute level.")] = "95%",
    seed: Annotated[int, typer.Option(help="Random seed for folds and LightGBM.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for the router (default: under LLMROUTE_HOME).")] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow, register, alias 'challenger'.")] = True,
    scorer: Annotated[
        bool,
        typer.Option(
            "--scorer/--no-scorer",
            help="Also train the post-call answer scorer the cascade uses, from the rows' answers (as `llmroute "
            "train` does); without it the served cascade judges answers by the router's probability alone.",
        ),
    ] = True,
    dask: Annotated[
        str | None,
        typer.Option("--dask", help="Train on a Dask cluster: 'local:N' (a LocalCluster of N worker processes) or "
                     "'tcp://host:8786' (a running scheduler), as for `llmroute train`."),
    ] = None,
) -> None:
    """Train a new router from logged production calls with feedback (plus benchmark logs) and register it
    as 'challenger' with its data lineage. Decisions read, with feedback, used and skipped are reported."""
    from llmroute.artifacts.registry import RegistryError
    from llmroute.data.decision_log.opening import DecisionLogError
    from llmroute.data.schema import LogValidationError
    from llmroute.training.retrain import retrain_from_production
    from llmroute.training.tracking import TrackingError
    from llmroute.training.train import TrainConfig

    since_dt, until_dt = parse_since(since), parse_since(until, "--until")
    settings = load_cli_settings(home, tracking_uri=tracking_uri, embedder=embedder)
    config = TrainConfig(embedder=settings.embedder, success_threshold=success_threshold, default_target=target,
                         seed=seed, with_scorer=scorer, dask=dask)
    try:
        retrain_from_production(from_production, settings, config, since_dt, until_dt, tuple(benchmark_logs or ()),
                                track=track, out_dir=out, echo=typer.echo)
    except (DecisionLogError, LogValidationError, FileNotFoundError, ValueError, TrackingError, RegistryError) as exc:
        fail(str(exc))


def offpolicy_cmd(
    from_production: DsnOpt,
    model: Annotated[str, typer.Option("--model", help="The router to evaluate: a folder or models:/<name>@<alias>.")] = "models:/llmroute@challenger",
    champion: Annotated[
        str | None,
        typer.Option("--champion", help="The router to compare with (default: models:/<name>@champion if it exists, "
                     "else the logging router's own picks recomputed from the log)."),
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.", min=10)] = 1000,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the report as JSON here.")] = None,
    home: HomeOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Off-policy evaluation: IPS, SNIPS, DM and DR estimates of a router's quality and cost on logged
    production traffic, against the champion, with bootstrap intervals and overlap warnings."""
    from llmroute.artifacts.loading import LOAD_ERRORS, load_router
    from llmroute.data.decision_log.opening import DecisionLogError, open_decision_log
    from llmroute.offpolicy.evaluate import evaluate_offpolicy
    from llmroute.offpolicy.logged import logged_traffic

    since_dt, until_dt = parse_since(since), parse_since(until, "--until")
    settings = load_cli_settings(home, tracking_uri=tracking_uri)
    try:
        store = open_decision_log(from_production)
        try:
            traffic = logged_traffic(store.joined(since=since_dt, until=until_dt))
        finally:
            store.close()
        for line in traffic.report_lines():
            typer.echo(line)
        target = load_router(model, settings)
        baseline = _champion(settings, champion)
        report = evaluate_offpolicy(traffic, target, baseline, settings.cache_dir / "embeddings.sqlite", n_boot=bootstrap)
    except LOAD_ERRORS as exc:  # the router or the champion named cannot be loaded
        fail(str(exc))
    except (DecisionLogError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    typer.echo(report.table())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), indent=1, default=str))
        typer.echo(f"wrote {out}")


def _champion(settings: Settings, champion: str | None) -> Router | None:
    from llmroute.artifacts.loading import load_router
    from llmroute.artifacts.registry import RegistryError

    if champion is not None:
        return load_router(champion, settings)
    try:
        return load_router(f"models:/{settings.registered_model}@champion", settings)
    except RegistryError:
        return None


def register(app: typer.Typer) -> None:
    """Add ``retrain`` and ``offpolicy`` to the main CLI."""
    app.command("retrain")(retrain_cmd)
    app.command("offpolicy")(offpolicy_cmd)
