"""`llmroute bench run`: benchmark catalog models on a task file. Wire with ``register(app)`` in cli/root.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmroute.cli.options import fail

bench_app = typer.Typer(help="Benchmark candidate models on your own task and write benchmark logs.",
                        no_args_is_help=True)


def _pairs(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        key, sep, val = v.partition("=")
        if not sep or not key or not val:
            raise typer.BadParameter(f"expected MODEL=URL, got {v!r}", param_hint="--base-url")
        out[key] = val
    return out


@bench_app.command("run")
def run(
    task: Annotated[Path, typer.Option("--task", help="Task YAML (format: see llmroute.benchmarking.task).")],
    models: Annotated[str, typer.Option("--models", help="Comma-separated catalog model names.")],
    out: Annotated[Path, typer.Option("--out", help="Benchmark logs to write (Parquet, llmroute schema).")],
    catalog: Annotated[Path | None, typer.Option(help="Model catalog YAML (default: the bundled one).")] = None,
    repeats: Annotated[int, typer.Option(help="Calls per (prompt, model), for consistency.")] = 1,
    concurrency: Annotated[int, typer.Option(help="Calls in flight per provider.")] = 4,
    budget: Annotated[float | None, typer.Option(help="Stop scheduling calls before this USD spend.")] = None,
    base_url: Annotated[
        list[str] | None, typer.Option("--base-url", help="MODEL=URL: OpenAI-compatible base URL (repeatable).")
    ] = None,
    default_base_url: Annotated[
        str | None, typer.Option(help="Base URL for models with no override and no catalog endpoint.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Timeout of one call attempt, seconds.")] = 60.0,
    retries: Annotated[int, typer.Option(help="Retries on timeouts, connection errors, 429 and 5xx.")] = 2,
    backoff: Annotated[float, typer.Option(help="First retry delay, seconds; doubles each retry.")] = 0.5,
    journal: Annotated[
        Path | None, typer.Option(help="Resumption journal (default: <out>.journal.jsonl).")
    ] = None,
    summary_dir: Annotated[
        Path | None, typer.Option(help="Where summary.csv and summary.png go (default: next to --out).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Call each model on each prompt, score the answers, write logs, a summary table and a plot.

    Rerunning the same command resumes: calls already in the journal are never sent again.
    Exit code 0 when every call was scored, 1 when some failed or the budget stopped the run (what was
    scored is written; the failure reasons are printed), 1 with nothing written when no call succeeded.
    """
    from llmroute.benchmarking.calls import CallPolicy
    from llmroute.benchmarking.journal import Journal
    from llmroute.benchmarking.runner import RunConfig, run_task, to_logs
    from llmroute.benchmarking.summary import format_summary, plot_summary, summarize
    from llmroute.benchmarking.task import TaskError, load_task
    from llmroute.data.catalog import CatalogError, load_catalog
    from llmroute.data.importers import write_logs

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise typer.BadParameter("no model names", param_hint="--models")
    try:
        spec = load_task(task)
        cat = load_catalog(catalog)
        policy = CallPolicy(_pairs(base_url), default_base_url, timeout, retries=retries, backoff_s=backoff)
        report = run_task(spec, names, cat, Journal(journal or out.with_name(out.name + ".journal.jsonl")), None,
                          policy, RunConfig(repeats, concurrency, budget, progress))
    except (TaskError, CatalogError, ValueError) as exc:
        fail(str(exc))
    if report.scored() == 0:
        for line in report.lines():
            typer.echo(line, err=True)
        typer.echo(f"error: none of the {report.planned} calls returned a scored answer; nothing written "
                   f"(the reasons are above and in the journal)", err=True)
        raise typer.Exit(1)
    logs = to_logs(report.records)
    write_logs(logs, out)
    summary = summarize(report.records)
    folder = summary_dir or out.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = out.name.removesuffix(".parquet")
    summary.to_csv(folder / f"{stem}.summary.csv", index=False)
    png = plot_summary(summary, folder / f"{stem}.summary.png", title=f"benchmark: {spec.name}")
    for line in report.lines():
        typer.echo(line)
    typer.echo(format_summary(summary))
    typer.echo(f"wrote {len(logs)} log rows to {out}; summary {folder / (stem + '.summary.csv')} and {png}")
    if report.stopped_reason or report.failed:
        raise typer.Exit(1)  # incomplete: a rerun resumes and sends only what is missing


def register(app: typer.Typer) -> None:
    """Add the ``bench`` sub-app to the top-level CLI."""
    app.add_typer(bench_app, name="bench")
