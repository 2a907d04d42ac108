"""``llmroute budgets ...``: spend control. Wire with ``register(app)`` in cli/root.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from llmroute.cli.loading import load_router_or_exit
from llmroute.cli.options import DecisionLogOpt, HomeOpt, default_decision_log, echo_json, fail, load_cli_settings

budgets_app = typer.Typer(
    help="Budgets per tenant, API key, user or everything: check a budget file, see spend, simulate policies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the option's first name: --db, like every other command that reads the decision log (shared in cli/options.py)
OldLogUrl = Annotated[str | None, typer.Option("--log-url", hidden=True, help="Older name of --db.")]


@budgets_app.command("validate")
def validate(file: Annotated[Path, typer.Argument(help="Budget YAML file (see the README's 'Budgets').")]) -> None:
    """Check a budget file: prints each budget, or the first error (file, budget and field) and exits 2."""
    from llmroute.budgets.spec import BudgetFileError, load_budget_file

    try:
        specs = load_budget_file(file)
    except BudgetFileError as exc:
        fail(str(exc))
    for s in specs:
        typer.echo(f"{s.name}: {s.scope} {s.subject}, ${s.amount_usd:g} per {'rolling ' if s.rolling else ''}"
                   f"{s.window} ({s.timezone}), {s.enforcement}")
    typer.echo(f"{file}: {len(specs)} budgets, all valid")


def _status_rows(url: str, file: Path | None) -> list[dict[str, Any]]:
    from llmroute.budgets.report import status_rows
    from llmroute.budgets.spec import BudgetFileError, load_budget_file, parse_budget
    from llmroute.data.decision_log import DecisionLogStore
    from llmroute.data.decision_log.ledger import BudgetLedger

    with DecisionLogStore(url) as store:
        ledger = BudgetLedger(store.engine)
        specs, sources = {}, {}
        for stored in ledger.list_budgets():
            try:
                specs[stored.name] = parse_budget(stored.spec, f"stored budget {stored.name!r}")
                sources[stored.name] = stored.source
            except BudgetFileError as exc:
                typer.echo(f"warning: {exc}", err=True)
        if file is not None:
            for s in load_budget_file(file):
                specs[s.name], sources[s.name] = s, "file"
        rows = status_rows(ledger, specs.values(), sources)
    return rows


@budgets_app.command("status")
def status(
    db: DecisionLogOpt = None,
    budgets: Annotated[Path | None, typer.Option("--budgets", help="Also show this budget file's budgets "
                                                    "(default: only budgets the service has stored).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    log_url: OldLogUrl = None,
) -> None:
    """Each budget's current window: spend, share of the amount, forecast at the window's end, alerts fired.

    The spend is read from the decision log: --db, else $LLMROUTE_SERVE_DECISION_LOG_URL (the service's
    setting), else decisions.sqlite under LLMROUTE_HOME."""
    import os

    from llmroute.budgets.spec import BudgetFileError
    from llmroute.data.decision_log.store import mask_url

    url = db or log_url or os.environ.get("LLMROUTE_SERVE_DECISION_LOG_URL") or default_decision_log()
    try:
        rows = _status_rows(url, budgets)
    except BudgetFileError as exc:
        fail(str(exc))
    if as_json:
        echo_json({"log": mask_url(url), "budgets": rows})
        return
    if not rows:
        typer.echo(f"no budgets in {mask_url(url)}" + (" or the budget file" if budgets else ""))
        return
    header = ("budget", "subject", "window", "enforcement", "spent", "amount", "share", "forecast", "resets/alerts")
    table = [header]
    for r in rows:
        fc = f"${r['forecast_usd']:.2f}" if r["forecast_usd"] is not None else "-"
        tail = ("rolling" if r["window"].startswith("rolling") else r["window_end"][:16]) + (
            f" [{', '.join(r['alerts_fired'])}]" if r["alerts_fired"] else "")
        table.append((r["name"], f"{r['scope']} {r['subject']}", r["window"], r["enforcement"], f"${r['spent_usd']:.4f}",
                      f"${r['amount_usd']:.2f}", f"{r['share']:.1%}", fc, tail))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


@budgets_app.command("simulate")
def simulate(
    logs: Annotated[Path, typer.Option("--logs", help="Benchmark logs with every model's outcome (Parquet).")],
    budget: Annotated[str, typer.Option(help="USD for the window (12.5) or a share of the unconstrained spend (50%).")] = "50%",
    traffic: Annotated[str | None, typer.Option(
        help="Stream: key=value pairs of requests, days, peak_ratio, burst_day, burst_hours, burst_factor, seed "
             "(default requests=5000,days=7,peak_ratio=3,burst_day=4,burst_hours=6,burst_factor=4,seed=0).")] = None,
    model: Annotated[str | None, typer.Option(help="Router folder or registry URI (default: the latest trained).")] = None,
    target: Annotated[str | None, typer.Option(help="Requests' quality target ('95%' or 0.85); default: the router's.")] = None,
    floor: Annotated[str | None, typer.Option(help="Pacing's lowest target ('80%' or 0.6); default: none.")] = None,
    smoothing: Annotated[float, typer.Option(
        min=1.0, help="Pacing: requests over which its trade-off follows the spend (exponential average; "
        "1 = none; the service paces with the default).")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="Folder for report.json, report.md and spend.png.")] = None,
    home: HomeOpt = None,
) -> None:
    """Replay the logs as one budget window of traffic (daily pattern and a burst) and compare no budget,
    block at 100%, a static downgrade ceiling and pacing: spend over time (plot), final spend, quality, blocked,
    pacing's quality difference to each (95% bootstrap interval), the hindsight constant trade-off (the best one
    knob does) and the floor spend (every request on its cheapest model): a budget below it is reported
    INFEASIBLE."""
    from llmroute.budgets.simulate import Traffic, markdown, plot, simulate_budget
    from llmroute.data.importers import read_logs
    from llmroute.data.schema import LogValidationError
    from llmroute.data.wide import to_wide
    from llmroute.router.decision import QualityTarget

    try:
        stream = Traffic.parse(traffic)
        goal = QualityTarget.parse(target) if target else None
        low = QualityTarget.parse(floor) if floor else None
    except ValueError as exc:
        fail(str(exc))
    router = load_router_or_exit(load_cli_settings(home), model)
    try:
        wide, left_out = to_wide(read_logs(logs), router.models).complete()
    except (LogValidationError, OSError) as exc:
        fail(f"{logs}: {exc}")
    if len(wide) == 0:
        fail(f"{logs}: no prompt has every one of the router's models' quality and cost")
    typer.echo(f"{logs}: {len(wide)} prompts with every outcome known ({left_out} left out)")
    try:
        sim = simulate_budget(router, wide, budget, stream, goal, low, progress=typer.echo, smoothing=smoothing)
    except ValueError as exc:
        fail(str(exc))
    text = markdown(sim.report)
    typer.echo(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(sim.report, indent=1))
        (out / "report.md").write_text(text + "\n\n![spend](spend.png)\n")
        plot(sim, out / "spend.png", f"{logs.name}: budget {budget} of the unconstrained spend")
        typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'spend.png'}")


def register(app: typer.Typer) -> None:
    """Add ``budgets`` (validate, status, simulate) to ``app``."""
    app.add_typer(budgets_app, name="budgets")
