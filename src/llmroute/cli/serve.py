"""`llmroute serve` and `llmroute replay-server`. Wire them with ``register(app)`` in cli/root.py."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from llmroute.cli.options import HomeOpt, fail, load_cli_settings, need_file

Host = Annotated[str, typer.Option(help="Interface to bind.")]


def _pairs(values: list[str] | None, option: str, key_name: str = "MODEL") -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        key, sep, val = v.rpartition("=")
        if not sep or not key or not val:
            raise typer.BadParameter(f"expected {key_name}=VALUE, got {v!r}", param_hint=option)
        out[key] = val
    return out


def _rates(values: list[str] | None, option: str) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in _pairs(values, option).items()}
    except ValueError as exc:
        raise typer.BadParameter(f"rate must be a number: {exc}", param_hint=option) from None


def _talk(quiet: bool = False) -> None:
    """Send the service's own log (router loaded, load failures, missing endpoints) to standard error."""
    from llmroute.serving.service_log import log_to_stderr

    if not quiet:
        log_to_stderr()


def serve(
    model: Annotated[
        str | None,
        typer.Option(help="Saved router folder or registry URI (default: $LLMROUTE_SERVE_MODEL or models:/llmroute@champion)."),
    ] = None,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", help="Accepted API key (repeatable); none = auth off. Prefer $LLMROUTE_SERVE_API_KEYS.")
    ] = None,
    admin_key: Annotated[
        list[str] | None,
        typer.Option("--admin-key", help="Admin key for /admin/* (repeatable); with client keys and no admin key, admin routes answer 403. Prefer $LLMROUTE_SERVE_ADMIN_API_KEYS."),
    ] = None,
    dashboard_key: Annotated[
        list[str] | None,
        typer.Option("--dashboard-key", help="Read-only key for the dashboard at /dashboard (repeatable; admin keys open it too). Prefer $LLMROUTE_SERVE_DASHBOARD_API_KEYS."),
    ] = None,
    base_url: Annotated[
        list[str] | None, typer.Option("--base-url", help="MODEL=URL: OpenAI-compatible base URL for a model (repeatable).")
    ] = None,
    default_base_url: Annotated[
        str | None, typer.Option(help="Base URL for models with no override and no catalog endpoint.")
    ] = None,
    confidence: Annotated[float | None, typer.Option(help="Cascade: escalate below this confidence (0-1).")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Cascade: most models tried per chat request.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Timeout of one provider call, seconds.")] = None,
    retries: Annotated[int | None, typer.Option(help="Retries of one provider call on 429/5xx.")] = None,
    reload_poll: Annotated[float | None, typer.Option(help="Poll the model source every N s and reload on change (0 = off).")] = None,
    experiment: Annotated[
        Path | None, typer.Option(help="A/B experiment YAML to serve (see docs/ab-testing.md); default: $LLMROUTE_SERVE_EXPERIMENT.")
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="Catalog YAML whose entries replace the router's catalog data for the models "
                     "they name (e.g. 'local: true' for a self-hosted endpoint, rate_limit_rpm/tpm); default: "
                     "$LLMROUTE_SERVE_CATALOG or the router's own snapshot."),
    ] = None,
    data_policy: Annotated[
        str | None,
        typer.Option("--data-policy", help="Default data policy: any, prefer_local or local_only (requests and "
                     "tenants may only make it stricter)."),
    ] = None,
    tenant_policy: Annotated[
        list[str] | None,
        typer.Option("--tenant-policy", help="TENANT=POLICY: a tenant's data policy (repeatable), e.g. acme=local_only."),
    ] = None,
    home: HomeOpt = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes sharing the port (the service is stateless; each loads the router).")
    ] = 1,
    access_log: Annotated[bool, typer.Option(help="uvicorn's access log (one line per request; costs CPU under load).")] = False,
    budgets: Annotated[
        Path | None, typer.Option(help="Budget YAML file (spend limits per tenant/key/user; see the README's "
                                     "'Budgets'); default: $LLMROUTE_SERVE_BUDGETS. A bad file stops the service.")
    ] = None,
) -> None:
    """Serve the router: /route, /v1/chat/completions (with the cascade), /models, /metrics, /health, /ready,
    and the operator's dashboard at /dashboard.

    Hybrid deployments: mark self-hosted models 'local: true' in a --catalog file; requests (or tenants,
    --tenant-policy) with data_policy local_only are then served only by local models and refused (503)
    rather than sent to an API; other requests fall back to API models when a local one fails. Circuit
    breakers (LLMROUTE_SERVE_BREAKER_*) and catalog rate limits take unhealthy models out of routing."""
    import uvicorn
    from pydantic import ValidationError

    from llmroute.data.decision_log import DecisionLogStore
    from llmroute.serving.app import create_app
    from llmroute.serving.decision_logging import resolve_log_url
    from llmroute.serving.settings import ServeSettings

    overrides = {
        "model": model, "api_keys": api_key or None, "admin_api_keys": admin_key or None,
        "dashboard_api_keys": dashboard_key or None,
        "provider_base_urls": _pairs(base_url, "--base-url") or None,
        "default_base_url": default_base_url, "cascade_confidence": confidence, "cascade_max_attempts": max_attempts,
        "provider_timeout_s": timeout, "provider_retries": retries, "reload_poll_s": reload_poll,
        "experiment": str(experiment) if experiment is not None else None,
        "catalog": str(catalog) if catalog is not None else None, "data_policy": data_policy,
        "data_policy_by_tenant": _pairs(tenant_policy, "--tenant-policy", "TENANT") or None,
        "budgets": str(budgets) if budgets is not None else None,
    }
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = ServeSettings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise typer.BadParameter(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    if settings.catalog is not None:
        from llmroute.data.catalog import CatalogError, load_catalog

        try:
            load_catalog(settings.catalog)
        except CatalogError as exc:
            raise typer.BadParameter(str(exc), param_hint="--catalog") from None
    if settings.budgets:
        from llmroute.budgets.spec import BudgetFileError, load_budget_file

        try:
            load_budget_file(settings.budgets)
        except BudgetFileError as exc:
            fail(str(exc))
    missing = [m for m in ("uvloop", "httptools") if importlib.util.find_spec(m) is None]
    if missing:
        typer.echo(f"warning: {' and '.join(missing)} not installed; uvicorn falls back to asyncio/h11, which "
                   "costs about a third more CPU per request", err=True)
    _talk()
    typer.echo(
        f"llmroute: loading router {settings.model} (GET /ready answers 200 once it is loaded); "
        f"listening on http://{host}:{port} (POST /route, /v1/chat/completions, GET /v1/models, /docs)",
        err=True,
    )
    if workers == 1:
        app = create_app(settings, core=load_cli_settings(home))
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, **_http_options())
        return
    # migrate the decision log once, here: worker processes migrating a new database at the same time race
    core = load_cli_settings(home)
    log_url = resolve_log_url(settings.decision_log_url, core.home)
    if log_url is not None:
        DecisionLogStore(log_url).close()
    # worker processes build their app from the environment: hand them the command line's settings there
    os.environ.update({f"LLMROUTE_SERVE_{k.upper()}": json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                       for k, v in given.items()})
    if home is not None:
        os.environ["LLMROUTE_HOME"] = str(home)
    uvicorn.run("llmroute.serving.app:app_from_environment", factory=True, workers=workers, host=host, port=port,
                log_level=log_level, access_log=access_log, **_http_options())


def _http_options() -> dict[str, Any]:
    """uvicorn's HTTP protocol with bounded request headers (431 past the limit, 408 for slow headers;
    :mod:`llmroute.serving.http_protocol`), or h11 with its own header bound when httptools is missing."""
    if importlib.util.find_spec("httptools") is None:
        from llmroute.serving.http_protocol import header_limits

        return {"http": "h11", "h11_max_incomplete_event_size": header_limits()[0]}
    from llmroute.serving.http_protocol import PROTOCOL_PATH

    return {"http": PROTOCOL_PATH}


def replay_server(
    logs: Annotated[Path, typer.Option("--logs", help="Benchmark logs in the llmroute schema (Parquet).")],
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    latency_ms: Annotated[float, typer.Option(help="Delay every answer by this many ms.")] = 0.0,
    failure_rate: Annotated[float, typer.Option(help="Share of requests answered with HTTP 500/429.")] = 0.0,
    timeout_rate: Annotated[float, typer.Option(help="Share of requests held for --timeout-s seconds.")] = 0.0,
    fail_model: Annotated[
        list[str] | None, typer.Option("--fail-model", help="MODEL=RATE: failure rate for one model (repeatable).")
    ] = None,
    timeout_model: Annotated[
        list[str] | None, typer.Option("--timeout-model", help="MODEL=RATE: timeout rate for one model (repeatable).")
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="How long an injected timeout holds a request.")] = 300.0,
    unknown_prompt: Annotated[
        str,
        typer.Option(help="'error' (404) or 'most_common' (the model's most common recorded answer; use it to try "
                     "free-text prompts that are not in the logs)."),
    ] = "error",
    chunk_delay_ms: Annotated[
        float, typer.Option(help="Pause before each word-sized chunk of a streamed answer (stream: true).")
    ] = 0.0,
    stream_break_rate: Annotated[
        float, typer.Option(help="Share of streamed answers cut off halfway (connection closed without [DONE]).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the fault injection.")] = 0,
    report_cost: Annotated[
        bool, typer.Option("--report-cost", help="Return each answer's logged cost_usd as usage.cost.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve recorded benchmark answers as an OpenAI-compatible API (simulations and tests)."""
    import uvicorn

    if unknown_prompt not in ("error", "most_common"):
        raise typer.BadParameter("must be 'error' or 'most_common'", param_hint="--unknown-prompt")
    failures, timeouts = _rates(fail_model, "--fail-model"), _rates(timeout_model, "--timeout-model")
    need_file(logs, "--logs")
    from llmroute.data.importers import read_logs
    from llmroute.serving.replay import create_replay_app

    try:
        app = create_replay_app(
            read_logs(logs), latency_ms, failure_rate, timeout_rate, seed,
            model_failure_rates=failures, model_timeout_rates=timeouts,
            timeout_s=timeout_s, unknown_prompt=unknown_prompt,  # type: ignore[arg-type]  # one of the two, checked above
            chunk_delay_ms=chunk_delay_ms, stream_break_rate=stream_break_rate, report_cost=report_cost,
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(
        f"replay server: recorded answers from {logs} as an OpenAI-compatible API on http://{host}:{port}/v1 "
        f"(unknown prompts: {'404' if unknown_prompt == 'error' else 'the most common recorded answer'})",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    """Add `serve` and `replay-server` to the llmroute CLI."""
    app.command("serve")(serve)
    app.command("replay-server")(replay_server)
