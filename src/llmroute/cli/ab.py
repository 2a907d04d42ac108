"""``llmroute ab ...``: A/B tests of routers against static rules. Wire with ``register(app)`` in cli/root.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmroute.cli.options import (
    DecisionLogOpt,
    HomeOpt,
    echo_json,
    existing_decision_log,
    fail,
    load_cli_settings,
)

ab_app = typer.Typer(
    help=(
        "A/B tests: the learned router against static rules or other routers. An experiment is a YAML "
        "file (arms, weights, unit, start/stop, guardrails; see docs/ab-testing.md). Serve it live with "
        "LLMROUTE_SERVE_EXPERIMENT=FILE llmroute serve; read the results with 'ab report'; estimate them "
        "before going live with 'ab simulate'."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ExperimentArg = Annotated[Path, typer.Argument(help="The experiment YAML file.", show_default=False)]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Folder for report.json, report.md, report.html and the PNG plots (default: print only).")]
FormatOpt = Annotated[str, typer.Option(
    "--format", help="What to print: 'md' (Markdown), 'json', or 'none'.")]
TrackOpt = Annotated[bool, typer.Option(
    "--track/--no-track", help="Log the report to MLflow next to the routers it compares (needs --out).")]


def _experiment(path: Path):
    from llmroute.abtest.experiment import ExperimentError, load_experiment

    try:
        return load_experiment(path)
    except ExperimentError as exc:
        fail(str(exc))


def _emit(report: dict, obs, out: Path | None, fmt: str, track: bool, home: Path | None) -> None:
    from llmroute.abtest.render import finite, render_markdown, write_report

    if fmt not in ("md", "json", "none"):
        fail(f"--format must be 'md', 'json' or 'none', got {fmt!r}")
    files = write_report(report, obs, out) if out is not None else []
    if fmt == "md":
        typer.echo(render_markdown(report, plots=False))
    elif fmt == "json":
        echo_json(finite(report))
    if out is not None:
        typer.echo(f"wrote {', '.join(f.name for f in files)} to {out}", err=fmt == "json")
    if track:
        if out is None:
            fail("--track logs the report files: give --out (or --no-track)")
        from llmroute.abtest.tracking import log_ab_run
        from llmroute.training.tracking import TrackingError

        try:
            run_id = log_ab_run(report, files, load_cli_settings(home))
        except TrackingError as exc:
            fail(str(exc))
        typer.echo(f"logged to MLflow run {run_id}", err=fmt == "json")


@ab_app.command("report")
def report_command(
    experiment: ExperimentArg,
    db: DecisionLogOpt = None,
    out: OutOpt = None,
    fmt: FormatOpt = "md",
    track: TrackOpt = False,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    home: HomeOpt = None,
) -> None:
    """Per arm: requests, cost, quality from feedback, target attainment, latency, escalation and error
    rates, cost per successful answer; every arm against the control with 95% intervals and p-values
    (Welch, bootstrap, two-proportion z), a power note, and whether there is enough data yet."""
    from llmroute.abtest.report import analyse, observations_from_log
    from llmroute.data.decision_log.store import mask_url

    exp = _experiment(experiment)
    url = existing_decision_log(db, home)
    obs = observations_from_log(url, exp)
    report = analyse(exp, obs, {"kind": "live", "decision_log": mask_url(url)}, seed)
    _emit(report, obs, out, fmt, track, home)


@ab_app.command("simulate")
def simulate_command(
    experiment: ExperimentArg,
    logs: Annotated[Path, typer.Option("--logs", help="Held-out benchmark logs in the llmroute schema (Parquet).")],
    out: OutOpt = None,
    fmt: FormatOpt = "md",
    track: TrackOpt = False,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic unit ids (a different split of prompts to arms).")] = 0,
    task_hints: Annotated[bool, typer.Option(
        "--task-hints/--no-task-hints", help="Pass each prompt's benchmark task as the request's task hint.")] = True,
    limit: Annotated[int | None, typer.Option(help="Only the first N complete prompts.", min=1)] = None,
    home: HomeOpt = None,
) -> None:
    """Replay held-out logs through the experiment's arms and assignment (each prompt its own unit;
    outcome = the recorded quality, cost and latency of the chosen model) and print the same report,
    plus every arm on every prompt with paired intervals."""
    from llmroute.abtest.arms import load_arm_routers
    from llmroute.abtest.simulate import simulate

    exp = _experiment(experiment)
    try:
        routers = load_arm_routers(exp, load_cli_settings(home))
    except RuntimeError as exc:
        fail(str(exc))
    try:
        result = simulate(exp, logs, routers, seed=seed, task_hints=task_hints, limit=limit)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    _emit(result.report, result.observations, out, fmt, track, home)


@ab_app.command("assign")
def assign_command(
    experiment: ExperimentArg,
    unit: Annotated[list[str], typer.Argument(help="Unit values (user, tenant or session ids).", show_default=False)],
) -> None:
    """Print the arm each unit value is assigned to (the same sticky hash the service uses)."""
    from llmroute.abtest.assignment import arm_for_bucket, bucket

    exp = _experiment(experiment)
    for value in unit:
        typer.echo(f"{value}\t{arm_for_bucket(exp, bucket(exp.name, value))}")


def register(app: typer.Typer) -> None:
    """Add the ``ab`` command group to the main CLI."""
    app.add_typer(ab_app, name="ab")
