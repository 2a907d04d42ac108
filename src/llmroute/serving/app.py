"""The routing service: ``create_app(settings)`` builds it; the lifespan loads the router and HTTP client.

Endpoints: ``GET /health`` and ``GET /ready`` (no auth); ``POST /route``, ``GET /models``,
``POST /v1/chat/completions``, ``POST /feedback``, ``GET /metrics`` (API key when configured);
``POST /admin/reload`` and ``GET/PUT/DELETE /admin/budgets`` (admin key; budgets:
:mod:`llmroute.serving.budget_control`); ``GET /dashboard`` (admin or dashboard key, see
:mod:`llmroute.serving.routes.dashboard`). Unless ``decision_log_url`` is off, every decision, chat outcome and feedback is
written to the decision log (:mod:`llmroute.serving.decision_logging`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from llmroute.budgets.spec import BudgetFileError
from llmroute.config import Settings
from llmroute.data.catalog import load_catalog
from llmroute.providers.http import make_provider_http
from llmroute.router.router import Router
from llmroute.serving.batching import Batchers
from llmroute.serving.budget_control import open_budget_control
from llmroute.serving.candidate import start_check_server
from llmroute.serving.compute import ComputeLimiter
from llmroute.serving.decision_logging import DecisionLog, enforce_retention, resolve_log_url
from llmroute.serving.errors import install_error_handlers
from llmroute.serving.exploration import Explorer
from llmroute.serving.health import ProviderHealth, breaker_config
from llmroute.serving.metrics import ServiceMetrics
from llmroute.serving.middleware import BodySizeLimit, CatchAll, LoggingHealthHeader, RequestMetrics
from llmroute.serving.reloading import poll_for_new_version, reload_router
from llmroute.serving.routes import (
    admin,
    budgets as budget_routes,
    chat,
    dashboard,
    docs,
    feedback,
    health,
    metrics,
    models,
    openai_models,
    routing,
)
from llmroute.serving.service_log import log_to_stderr
from llmroute.serving.settings import ServeSettings
from llmroute.serving.state import AppState, RouterHolder, Services, freeze_heap

if TYPE_CHECKING:
    from llmroute.router.answer_scorer import ResponseScorer


def create_app(
    settings: ServeSettings,
    router: Router | None = None,
    *,
    core: Settings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    scorer: ResponseScorer | None = None,
) -> FastAPI:
    """Build the service.

    ``router``: serve this router (tests); otherwise the lifespan starts loading ``settings.model``
    in the background and ``/ready`` answers 503 until it is loaded. ``core``: llmroute settings
    (embedders, registry store; default: from the environment at startup). ``transport``: the
    transport of the provider HTTP client (tests pass ``httpx.MockTransport``; with one, provider calls go
    through httpx whatever ``settings.provider_http`` says). ``scorer``: the
    post-call response scorer served with ``router`` (a loaded folder's ``scorer/`` is found by itself).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        core_settings = core or Settings()
        log_url = resolve_log_url(settings.decision_log_url, core_settings.home)
        decision_log = (
            await run_in_threadpool(
                functools.partial(DecisionLog.open, log_url, settings.redact_prompts,
                                  settings.spool_dir(core_settings.home), feedback_grace_s=settings.feedback_grace_s,
                                  shipper=settings.decision_log_shipper)
            )
            if log_url else None
        )
        catalog = await run_in_threadpool(load_catalog, settings.catalog) if settings.catalog else None
        metrics_ = ServiceMetrics.create()
        budgets = None
        if decision_log is not None:
            budgets = await run_in_threadpool(
                open_budget_control, settings.budgets, decision_log.store.engine, metrics_.registry,
                settings.budget_refresh_s, settings.budget_exact_share,
            )
        elif settings.budgets:
            raise BudgetFileError(
                f"{settings.budgets}: budgets need the decision log (their spend ledger lives there), but "
                "decision_log_url is off"
            )
        experiment = None
        if settings.experiment:
            from llmroute.serving.abtesting import load_live_experiment

            experiment = await run_in_threadpool(
                load_live_experiment, settings.experiment, settings.model, core_settings, catalog
            )
        executor = ThreadPoolExecutor(settings.compute_workers, thread_name_prefix="llmroute-compute")
        async with contextlib.AsyncExitStack() as stack:
            if decision_log is not None:
                # registered first, so it runs last: after the HTTP client and background tasks are done
                stack.push_async_callback(run_in_threadpool, decision_log.close)
            http = make_provider_http(settings.provider_http, transport)
            stack.push_async_callback(http.aclose)
            services = Services(
                settings=settings,
                core=core_settings,
                holder=RouterHolder(router, scorer, catalog),
                http=http,
                metrics=metrics_,
                compute=ComputeLimiter(settings.compute_threads),
                executor=executor,
                decision_log=decision_log,
                explorer=Explorer(settings.exploration_seed),
                experiment=experiment,
                batchers=Batchers(settings.route_batch_max),
                health=ProviderHealth(breaker_config(settings)),
                budgets=budgets,
            )
            if budgets is not None:
                services.background.append(asyncio.create_task(budgets.run()))
            if router is None:
                services.background.append(asyncio.create_task(_initial_load(services)))
            else:
                freeze_heap()
            if decision_log is not None and settings.decision_log_retention_days:
                services.background.append(asyncio.create_task(
                    enforce_retention(decision_log, settings.decision_log_retention_days)
                ))
            if settings.reload_poll_s > 0:
                services.background.append(
                    asyncio.create_task(poll_for_new_version(services, settings.reload_poll_s))
                )
            try:
                yield {"services": services}
            finally:
                if budgets is not None:
                    await budgets.drain()  # streamed answers' charges still being booked
                for task in services.background:
                    task.cancel()
                for task in services.background:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="llmroute",
        summary="A learned LLM router: the cheapest model that will still meet a quality target.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,  # served by routes.docs, behind a key unless open_docs
    )
    install_error_handlers(app)
    for module in (health, routing, models, openai_models, chat, feedback, admin, metrics, dashboard, budget_routes):
        app.include_router(module.router)
    app.include_router(docs.docs_router(settings.open_docs))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(LoggingHealthHeader)
    app.add_middleware(RequestMetrics)
    app.add_middleware(CatchAll)  # added last: the outermost of ours
    return app


def app_from_environment() -> FastAPI:
    """The service configured from the environment alone (``LLMROUTE_SERVE_*``, ``LLMROUTE_*``): the app
    factory of each worker process when ``llmroute serve --workers N`` runs several; like the command, it
    sends the service's own log (each reload's steps) to standard error."""
    log_to_stderr()
    return create_app(ServeSettings(), core=Settings())


async def _initial_load(services: Services) -> None:
    if services.settings.reload_isolation:
        # the reloads' isolated checks fork from it; a separate process, started alongside the first load
        await asyncio.gather(reload_router(services), run_in_threadpool(start_check_server))
    else:
        await reload_router(services)
