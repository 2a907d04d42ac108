"""Typed lifespan state of the routing service and the atomically swappable router."""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from llmroute.config import Settings
from llmroute.data.catalog import ModelSpec
from llmroute.providers.http import ProviderHTTP
from llmroute.router.router import Router
from llmroute.serving.batching import Batchers
from llmroute.serving.compute import ComputeLimiter
from llmroute.serving.decision_logging import DecisionLog
from llmroute.serving.exploration import Explorer
from llmroute.serving.health import ProviderHealth
from llmroute.serving.metrics import ServiceMetrics
from llmroute.serving.settings import ServeSettings

T = TypeVar("T")

if TYPE_CHECKING:
    from llmroute.router.answer_scorer import ResponseScorer
    from llmroute.serving.abtesting import LiveExperiment
    from llmroute.serving.budget_control import BudgetControl


@dataclass(frozen=True)
class Served:
    """The served router and its optional post-call response scorer (swapped together)."""

    router: Router
    scorer: ResponseScorer | None = None


class RouterHolder:
    """Holds the served router. Requests take :attr:`current` once and keep that object, so a reload
    (a single reference assignment) never changes the router under a request in flight (and routers
    are immutable, so nothing else does either)."""

    def __init__(
        self, router: Router | None = None, scorer: ResponseScorer | None = None,
        catalog: Mapping[str, ModelSpec] | None = None,
    ) -> None:
        self.catalog = catalog
        self.served: Served | None = Served(self._prepare(router), scorer) if router is not None else None
        self.load_error: str | None = None
        self.last_reload: Any = None  # the ReloadOutcome of the last reload (serving.reloading)
        self.prepared_version: str | None = None  # the version polling holds prepared ahead (serving.reloading)
        self.reload_lock = asyncio.Lock()

    def _prepare(self, router: Router) -> Router:
        """The router as served: the deployment's catalog entries over its snapshot (when a catalog is
        set, see ``ServeSettings.catalog``)."""
        return router.with_catalog(self.catalog) if self.catalog is not None else router

    @property
    def current(self) -> Router | None:
        served = self.served
        return served.router if served is not None else None

    def swap(self, router: Router, scorer: ResponseScorer | None = None) -> Router | None:
        old = self.current
        self.served = Served(self._prepare(router), scorer)
        self.load_error = None
        return old


@dataclass(frozen=True)
class Services:
    """Everything a request handler needs; built by the lifespan of :func:`create_app`."""

    settings: ServeSettings
    core: Settings
    holder: RouterHolder
    http: ProviderHTTP  # provider calls (llmroute.providers.http)
    metrics: ServiceMetrics
    compute: ComputeLimiter
    executor: ThreadPoolExecutor | None = None  # CPU work (routing, scoring); None = anyio's thread pool
    background: list[asyncio.Task[None]] = field(default_factory=list)
    decision_log: DecisionLog | None = None  # None = logging off
    explorer: Explorer = field(default_factory=Explorer)  # exploration draws (seeded from settings by the app)
    experiment: LiveExperiment | None = None  # the A/B experiment being served, if any
    batchers: Batchers = field(default_factory=Batchers)  # per-router micro-batching of routing
    health: ProviderHealth = field(default_factory=ProviderHealth)  # breakers and rate limits per model
    budgets: BudgetControl | None = None  # spend control, when budgets are configured


def freeze_heap(collect: bool = False) -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    The loaded router and the libraries are many long-lived objects; every full collection walked them
    all, and under load those pauses (150-420 ms, measured with gc.callbacks) stalled every request in
    flight: the p99 at concurrency 32. Frozen objects are still freed by reference counting, which is
    how a router replaced by a reload goes: its models form no reference cycles
    (``tests/serving/test_heap.py``), so a reload only freezes the new router's objects. ``collect``:
    unfreeze, collect the whole heap once (a pause of its own) and freeze again; for a reload that replaced
    the embedder too (a torch model may hold cycles), so that nothing it leaves stays frozen.
    """
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


async def run_cpu(services: Services, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking CPU work on the service's compute pool, off the event loop."""
    if services.executor is None:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(fn, *args)
    return await asyncio.get_running_loop().run_in_executor(services.executor, functools.partial(fn, *args))


class AppState(TypedDict):
    """What the lifespan yields; handlers read it as ``request.state.services``."""

    services: Services
