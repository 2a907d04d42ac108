"""The root of the ``llmroute`` command line: the app and its ``--quiet`` callback, the train, evaluate and
route commands, and the registration of every command group. Each command is a thin wrapper over a plain
function.

Every module of this package adds its commands the same way, with ``register(app)``; :data:`COMMAND_GROUPS`
lists them in the order ``llmroute --help`` shows them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from llmroute.cli.ab import register as register_ab
from llmroute.cli.bench import register as register_bench
from llmroute.cli.budgets import register as register_budgets
from llmroute.cli.data import register as register_data
from llmroute.cli.loading import load_router_and_scorer_or_exit, load_router_or_exit
from llmroute.cli.logs import register as register_logs
from llmroute.cli.options import (
    CatalogOpt,
    HomeOpt,
    QuietOpt,
    echo_json,
    fail,
    load_cli_settings,
    need_file,
    set_quiet,
)
from llmroute.cli.registry import register as register_registry, track_training
from llmroute.cli.retrain import register as register_retrain
from llmroute.cli.serve import register as register_serve

HELP = (
    "llmroute: a learned LLM router. It learns from benchmark logs (prompt x model -> quality, cost) "
    "which model is the cheapest one that will still meet a quality target, and evaluates itself "
    "against honest baselines. Local state lives under LLMROUTE_HOME (default ~/.llmroute)."
)


def _main(quiet: QuietOpt = False) -> None:
    """llmroute: a learned LLM router (see `llmroute COMMAND --help`)."""
    set_quiet(quiet)


DASK_HELP = (
    "Train on a Dask cluster: 'local:N' starts a LocalCluster of N worker processes on this machine (one "
    "thread, 4 GiB each); 'tcp://host:8786' uses a running scheduler (workers need llmroute installed and the "
    "logs path readable). Default: in this process."
)


def train(
    logs: Annotated[Path, typer.Option("--logs", help="Benchmark logs in the llmroute schema (Parquet).")],
    home: HomeOpt = None,
    embedder: Annotated[
        str | None,
        typer.Option(
            help="'minilm-static' (default, fast), 'minilm' (the transformer) or a sentence-transformers name/path."
        ),
    ] = None,
    success_threshold: Annotated[
        float, typer.Option(help="A call meets the target when its quality is at least this (0-1).")
    ] = 0.5,
    target: Annotated[
        str, typer.Option(help="Default quality target: '95%' of the best model, or an absolute level like '0.85'.")
    ] = "95%",
    out: Annotated[Path | None, typer.Option(help="Folder for the router (default: under LLMROUTE_HOME).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for folds and LightGBM.")] = 0,
    scorer: Annotated[
        bool,
        typer.Option(
            "--scorer/--no-scorer",
            help="Also train the post-call answer scorer the cascade uses (needs logged responses).",
        ),
    ] = True,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow and register the router.")] = True,
    test_logs: Annotated[Path | None, typer.Option(help="Held-out logs to evaluate on and log with the run.")] = None,
    catalog: CatalogOpt = None,
    quiet: QuietOpt = False,
    dask: Annotated[str | None, typer.Option("--dask", help=DASK_HELP)] = None,
) -> None:
    """Train a router: embed prompts, fit calibrated LightGBM quality models and a cost model, save.

    Progress goes to standard error (--quiet silences it); the router is registered in MLflow as
    @challenger unless --no-track. With --dask the logs are read, embedded and featurised partition by
    partition on a Dask cluster and the LightGBM models are fitted there (lightgbm.dask); the router
    saved is the same kind of artifact.
    """
    from llmroute.data.catalog import CatalogError, load_merged_catalog
    from llmroute.router.decision import QualityTarget

    set_quiet(quiet)
    need_file(logs, "--logs")
    if test_logs is not None:
        need_file(test_logs, "--test-logs")
    if not 0.0 <= success_threshold <= 1.0:
        fail(f"--success-threshold must be within [0, 1], got {success_threshold}")
    try:
        QualityTarget.parse(target)
        merged = load_merged_catalog(catalog)
    except (ValueError, CatalogError) as exc:
        fail(str(exc))
    from llmroute.data.schema import LogValidationError
    from llmroute.training.train import TrainConfig, train_router

    settings = load_cli_settings(home, embedder=embedder)
    try:
        router, folder = train_router(
            logs,
            settings,
            TrainConfig(
                embedder=settings.embedder,
                success_threshold=success_threshold,
                default_target=target,
                seed=seed,
                with_scorer=scorer,
                dask=dask,
            ),
            catalog=merged,
            out_dir=out,
        )
        if track:
            track_training(router, folder, logs, settings, test_logs)
    except (LogValidationError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))


def evaluate(
    logs: Annotated[Path, typer.Option("--logs", help="Held-out benchmark logs (Parquet).")],
    report_dir: Annotated[Path, typer.Option("--report-dir", help="Where report.json, report.md and the PNG go.")],
    model: Annotated[
        str | None,
        typer.Option("--model", help="A router folder or models:/<name>@<alias> (default: the most recently trained)."),
    ] = None,
    train_logs: Annotated[
        Path | None, typer.Option(help="Logs the baselines learn from (default: the router's training logs).")
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="Static rules YAML (default: the seed guide's rules).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for confidence intervals.")] = 1000,
    home: HomeOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a router against every baseline, single model and the oracle on held-out logs; with the
    router's answer scorer, also replay the logged answers through the cascade (its operating points, a
    FrugalGPT-style fixed chain and the perfect-scorer ceiling). What cannot be computed is skipped with
    the reason."""
    set_quiet(quiet)
    need_file(logs, "--logs")
    for opt, path in (("--train-logs", train_logs), ("--rules", rules)):
        if path is not None:
            need_file(path, opt)
    if bootstrap < 0:
        fail(f"--bootstrap must be >= 0, got {bootstrap}")
    from llmroute.data.schema import LogValidationError
    from llmroute.experiments.report import run_evaluation
    settings = load_cli_settings(home)
    try:
        router, scorer = load_router_and_scorer_or_exit(settings, model)
        report = run_evaluation(
            router, logs, report_dir, settings.cache_dir / "embeddings.sqlite", train_logs, rules, bootstrap,
            scorer=scorer,
        )
    except (LogValidationError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    r = report["routers"]
    typer.echo(f"{'router':<24} {'AIQ':>7} {'x@95%':>7} {'x@best':>7}")
    for name in ("learned", "learned_task_hint", "per_task_static", "knn", "cheapest_adequate", "random",
                 "cascade", "fixed_chain", "cascade_perfect_scorer"):
        if name in r:
            e = r[name]
            fmt = lambda v: "never" if v is None else f"{v:.2f}"  # noqa: E731 - a one-line formatter
            typer.echo(
                f"{name:<24} {e['aiq']:>7.4f} {fmt(e['cost_at_95_ratio']):>7} {fmt(e['cost_at_parity_ratio']):>7}"
            )
    for name, why in report["skipped"].items():
        typer.echo(f"skipped {name}: {why}")
    typer.echo(f"wrote {report_dir / 'report.md'}, report.json and cost_quality.png ({report['seconds']} s)")


def route(
    prompt: Annotated[str, typer.Argument(help="The prompt text ('-' reads standard input).")],
    model: Annotated[
        str | None, typer.Option("--model", help="A router folder or models:/<name>@<alias> (default: latest).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="'95%' of the best model, or an absolute level like '0.85'.")] = None,
    confidence: Annotated[
        float | None, typer.Option(help="Threshold rule: cheapest model with P(meets target) >= this.")
    ] = None,
    max_cost: Annotated[float | None, typer.Option(help="Max expected USD cost of the call.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Max typical latency (catalog).")] = None,
    allow: Annotated[list[str] | None, typer.Option(help="Only these models (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Never these models (repeatable).")] = None,
    capability: Annotated[list[str] | None, typer.Option(help="Required capability (repeatable).")] = None,
    task: Annotated[str | None, typer.Option(help="Optional task hint (e.g. mbpp).")] = None,
    catalog: CatalogOpt = None,
    home: HomeOpt = None,
) -> None:
    """Route one prompt and print the decision as JSON (every candidate's probability, expected cost,
    cost cap, exclusion reason and any catalog figure that was unknown)."""
    from llmroute.data.catalog import CatalogError
    from llmroute.router.decision import Constraints, NoEligibleModelError, QualityTarget

    try:  # argument errors first, before the router loads
        parsed_target = QualityTarget.parse(target) if target else None
    except ValueError as exc:
        fail(str(exc))
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        fail(f"--confidence must be within [0, 1], got {confidence}")
    for name, value in (("--max-cost", max_cost), ("--max-latency-ms", max_latency_ms)):
        if value is not None and not value > 0:
            fail(f"{name} must be a positive number, got {value}")
    if catalog is not None:
        need_file(catalog, "--catalog")
    text = sys.stdin.read() if prompt == "-" else prompt
    router = load_router_or_exit(load_cli_settings(home), model)
    if catalog is not None:
        try:
            router = router.with_catalog_file(catalog)
        except CatalogError as exc:
            fail(str(exc))
    constraints = Constraints(
        max_cost_usd=max_cost,
        max_latency_ms=max_latency_ms,
        allowed_models=tuple(allow) if allow else None,
        excluded_models=tuple(exclude or ()),
        required_capabilities=tuple(capability or ()),
    )
    try:
        decision = router.route(text, constraints, parsed_target, confidence, task)
    except (NoEligibleModelError, ValueError) as exc:
        fail(str(exc))
    echo_json(decision.to_dict())


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``route`` to ``app``."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("route")(route)


COMMAND_GROUPS = (
    register_data,
    register_registry,
    register_serve,
    register_bench,
    register_logs,
    register_ab,
    register_retrain,
    register_budgets,
    register,
)


def build_app() -> typer.Typer:
    """The whole command line: the root options (``--quiet``) and every group of :data:`COMMAND_GROUPS`."""
    app = typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.callback()(_main)
    for add_commands in COMMAND_GROUPS:
        add_commands(app)
    return app


app = build_app()


def main() -> None:
    """The ``llmroute`` console script and ``python -m llmroute.cli``."""
    from llmroute.openmp import passive_openmp

    passive_openmp()  # before anything loads lightgbm or torch: no OpenMP spin-waiting
    app()


if __name__ == "__main__":
    main()
