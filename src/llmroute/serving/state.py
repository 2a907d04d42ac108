"""Typed lifespan state of the routing service and the atomically swappable router."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TypedDict

import httpx

from llmroute.config import Settings
from llmroute.router.router import Router
from llmroute.serving.compute import ComputeLimiter
from llmroute.serving.metrics import ServiceMetrics
from llmroute.serving.settings import ServeSettings


class RouterHolder:
    """Holds the served router. Requests take :attr:`current` once and keep that object, so a reload
    (a single reference assignment) never changes the router under a request in flight."""

    def __init__(self, router: Router | None = None) -> None:
        self.current: Router | None = router
        self.load_error: str | None = None
        self.reload_lock = asyncio.Lock()

    def swap(self, router: Router) -> Router | None:
        old, self.current = self.current, router
        self.load_error = None
        return old


@dataclass(frozen=True)
class Services:
    """Everything a request handler needs; built by the lifespan of :func:`create_app`."""

    settings: ServeSettings
    core: Settings
    holder: RouterHolder
    http: httpx.AsyncClient
    metrics: ServiceMetrics
    compute: ComputeLimiter
    background: list[asyncio.Task[None]] = field(default_factory=list)


class AppState(TypedDict):
    """What the lifespan yields; handlers read it as ``request.state.services``."""

    services: Services
