"""Loading and atomically replacing the served router (initial load, /admin/reload, polling)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from llmroute.serving.loading import load_served, source_version
from llmroute.serving.state import Services, freeze_heap

log = logging.getLogger("llmroute.serving")


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    router_version: str | None
    previous_version: str | None
    error: str | None = None


async def reload_router(services: Services) -> ReloadOutcome:
    """Load the configured model off the event loop and swap it in; on failure keep the current one."""
    holder = services.holder
    async with holder.reload_lock:
        previous = holder.current.version if holder.current is not None else None
        try:
            router, scorer = await run_in_threadpool(
                load_served, services.settings.model, services.core, services.settings.use_scorer
            )
        except Exception as exc:  # noqa: BLE001 - any failure keeps the current router
            error = f"{type(exc).__name__}: {exc}"
            if holder.current is None:
                holder.load_error = error
            log.error("loading router from %s failed: %s", services.settings.model, error)
            return ReloadOutcome(False, previous, previous, error)
        replaced = holder.swap(router, scorer) is not None
        freeze_heap(replaced)
        log.info("serving router %s (was %s)%s", router.version, previous, " with a response scorer" if scorer else "")
        return ReloadOutcome(True, router.version, previous)


async def poll_for_new_version(services: Services, every_s: float) -> None:
    """Reload whenever the model source points at a version other than the one served."""
    while True:
        await asyncio.sleep(every_s)
        try:
            version = await run_in_threadpool(source_version, services.settings.model, services.core)
        except Exception as exc:  # noqa: BLE001 - a flaky store must not stop polling
            log.warning("polling %s failed: %s", services.settings.model, exc)
            continue
        current = services.holder.current
        if current is None or current.version != version:
            await reload_router(services)
