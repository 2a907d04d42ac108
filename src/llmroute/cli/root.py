"""The `llmroute` command line. Each command is a thin wrapper over a plain function."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from llmroute.cli.ab import register as register_ab
from llmroute.cli.bench import register as register_bench
from llmroute.cli.budgets import register as register_budgets
from llmroute.cli.data import data_app
from llmroute.cli.logs import register as register_logs
from llmroute.cli.registry import load_registry_router, register, track_training
from llmroute.cli.retrain import register as register_retrain
from llmroute.cli.serve import register as register_serve

app = typer.Typer(
    help=(
        "llmroute: a learned LLM router. It learns from benchmark logs (prompt x model -> quality, cost) "
        "which model is the cheapest one that will still meet a quality target, and evaluates itself "
        "against honest baselines. Local state lives under LLMROUTE_HOME (default ~/.llmroute)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
register(app)
register_serve(app)
register_bench(app)
register_logs(app)
register_ab(app)
register_retrain(app)
register_budgets(app, lambda settings, model: _load_router(settings, model))

QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bars or progress lines on standard error (results still print).")
]


def _quiet(quiet: bool) -> None:
    """--quiet: no progress output in this process or the ones it starts (llmroute.progress)."""
    if quiet:
        from llmroute.progress import set_quiet

        set_quiet(True)


@app.callback()
def _main(quiet: QuietOpt = False) -> None:
    """llmroute: a learned LLM router (see `llmroute COMMAND --help`)."""
    _quiet(quiet)


Home = Annotated[
    Optional[Path], typer.Option("--home", help="State directory (default: $LLMROUTE_HOME or ~/.llmroute).")
]
CatalogOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--catalog",
        envvar="LLMROUTE_CATALOG",
        help=(
            "Your catalog YAML, merged over the bundled one: an entry naming a known model overrides only the "
            "fields it gives (e.g. typical_latency_ms, prices, context_window); other entries add models."
        ),
    ),
]


def _settings(home: Path | None, embedder: str | None = None):
    from llmroute.config import load_settings

    return load_settings(home=home, embedder=embedder)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _need_file(path: Path, option: str) -> None:
    """Fail early (before anything slow) when a file an option names does not exist."""
    if not path.exists():
        _fail(f"{option}: {path} does not exist")


def _load_router(settings, model: str | Path | None):
    if isinstance(model, str) and model.startswith("models:/"):
        return load_registry_router(settings, model)
    if model:
        folder = Path(model)
    else:
        from llmroute.training.train import latest_router_dir

        try:
            folder = latest_router_dir(settings)
        except FileNotFoundError as exc:
            _fail(str(exc))
            raise
    if not (folder / "router.json").exists():
        _fail(f"{folder} is not a saved router (no router.json)")
    from llmroute.router.embedder import EmbedderMismatchError, load_embedder
    from llmroute.router.router import Router, read_router_meta

    meta = read_router_meta(folder)
    embedder = load_embedder(meta["embedder"]["spec"], settings.embedders_dir)
    try:
        return Router.load(folder, embedder)
    except EmbedderMismatchError as exc:
        _fail(str(exc))
        raise


def _load_router_and_scorer(settings, model: str | None):
    """The router and the answer scorer saved (or registered) with it (None when it has none)."""
    from llmroute.router.answer_scorer import scorer_in
    from llmroute.router.embedder import EmbedderMismatchError

    if isinstance(model, str) and model.startswith("models:/"):
        from llmroute.training.registry import RegistryError, load_served_uri

        try:
            return load_served_uri(model, settings, with_scorer=True)
        except (RegistryError, EmbedderMismatchError) as exc:
            _fail(str(exc))
            raise
    router = _load_router(settings, model)
    from llmroute.training.train import latest_router_dir

    folder = Path(model) if model else latest_router_dir(settings)
    return router, scorer_in(folder, router.embedder)


@app.command()
def train(
    logs: Annotated[Path, typer.Option("--logs", help="Benchmark logs in the llmroute schema (Parquet).")],
    home: Home = None,
    embedder: Annotated[
        Optional[str],
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
    out: Annotated[Optional[Path], typer.Option(help="Folder for the router (default: under LLMROUTE_HOME).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for folds and LightGBM.")] = 0,
    scorer: Annotated[
        bool,
        typer.Option(
            "--scorer/--no-scorer",
            help="Also train the post-call answer scorer the cascade uses (needs logged responses).",
        ),
    ] = True,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow and register the router.")] = True,
    test_logs: Annotated[Optional[Path], typer.Option(help="Held-out logs to evaluate on and log with the run.")] = None,
    catalog: CatalogOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a router: embed prompts, fit calibrated LightGBM quality models and a cost model, save.

    Progress goes to standard error (--quiet silences it); the router is registered in MLflow as
    @challenger unless --no-track.
    """
    from llmroute.data.catalog import CatalogError, load_merged_catalog
    from llmroute.router.decision import QualityTarget

    _quiet(quiet)
    _need_file(logs, "--logs")
    if test_logs is not None:
        _need_file(test_logs, "--test-logs")
    if not 0.0 <= success_threshold <= 1.0:
        _fail(f"--success-threshold must be within [0, 1], got {success_threshold}")
    try:
        QualityTarget.parse(target)
        merged = load_merged_catalog(catalog)
    except (ValueError, CatalogError) as exc:
        _fail(str(exc))
    from llmroute.data.schema import LogValidationError
    from llmroute.training.train import TrainConfig, train_router

    settings = _settings(home, embedder)
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
            ),
            catalog=merged,
            out_dir=out,
        )
        if track:
            track_training(router, folder, logs, settings, test_logs)
    except (LogValidationError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def evaluate(
    logs: Annotated[Path, typer.Option("--logs", help="Held-out benchmark logs (Parquet).")],
    report_dir: Annotated[Path, typer.Option("--report-dir", help="Where report.json, report.md and the PNG go.")],
    model: Annotated[
        Optional[str],
        typer.Option("--model", help="A router folder or models:/<name>@<alias> (default: the most recently trained)."),
    ] = None,
    train_logs: Annotated[
        Optional[Path], typer.Option(help="Logs the baselines learn from (default: the router's training logs).")
    ] = None,
    rules: Annotated[Optional[Path], typer.Option(help="Static rules YAML (default: the seed guide's rules).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for confidence intervals.")] = 1000,
    home: Home = None,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a router against every baseline, single model and the oracle on held-out logs; with the
    router's answer scorer, also replay the logged answers through the cascade (its operating points, a
    FrugalGPT-style fixed chain and the perfect-scorer ceiling). What cannot be computed is skipped with
    the reason."""
    _quiet(quiet)
    _need_file(logs, "--logs")
    for opt, path in (("--train-logs", train_logs), ("--rules", rules)):
        if path is not None:
            _need_file(path, opt)
    if bootstrap < 0:
        _fail(f"--bootstrap must be >= 0, got {bootstrap}")
    from llmroute.data.schema import LogValidationError
    from llmroute.experiments.report import run_evaluation
    settings = _settings(home)
    try:
        router, scorer = _load_router_and_scorer(settings, model)
        report = run_evaluation(
            router, logs, report_dir, settings.cache_dir / "embeddings.sqlite", train_logs, rules, bootstrap,
            scorer=scorer,
        )
    except (LogValidationError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
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


@app.command()
def route(
    prompt: Annotated[str, typer.Argument(help="The prompt text ('-' reads standard input).")],
    model: Annotated[
        Optional[str], typer.Option("--model", help="A router folder or models:/<name>@<alias> (default: latest).")
    ] = None,
    target: Annotated[Optional[str], typer.Option(help="'95%' of the best model, or an absolute level like '0.85'.")] = None,
    confidence: Annotated[
        Optional[float], typer.Option(help="Threshold rule: cheapest model with P(meets target) >= this.")
    ] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Max expected USD cost of the call.")] = None,
    max_latency_ms: Annotated[Optional[float], typer.Option(help="Max typical latency (catalog).")] = None,
    allow: Annotated[Optional[list[str]], typer.Option(help="Only these models (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Never these models (repeatable).")] = None,
    capability: Annotated[Optional[list[str]], typer.Option(help="Required capability (repeatable).")] = None,
    task: Annotated[Optional[str], typer.Option(help="Optional task hint (e.g. mbpp).")] = None,
    catalog: CatalogOpt = None,
    home: Home = None,
) -> None:
    """Route one prompt and print the decision as JSON (every candidate's probability, expected cost,
    cost cap, exclusion reason and any catalog figure that was unknown)."""
    from llmroute.data.catalog import CatalogError
    from llmroute.router.decision import Constraints, NoEligibleModelError, QualityTarget

    try:  # argument errors first, before the router loads
        parsed_target = QualityTarget.parse(target) if target else None
    except ValueError as exc:
        _fail(str(exc))
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        _fail(f"--confidence must be within [0, 1], got {confidence}")
    for name, value in (("--max-cost", max_cost), ("--max-latency-ms", max_latency_ms)):
        if value is not None and not value > 0:
            _fail(f"{name} must be a positive number, got {value}")
    if catalog is not None:
        _need_file(catalog, "--catalog")
    text = sys.stdin.read() if prompt == "-" else prompt
    router = _load_router(_settings(home), model)
    if catalog is not None:
        try:
            router = router.with_catalog_file(catalog)
        except CatalogError as exc:
            _fail(str(exc))
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
        _fail(str(exc))
        return
    typer.echo(json.dumps(decision.to_dict(), indent=1))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
