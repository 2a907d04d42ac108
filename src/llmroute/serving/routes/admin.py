"""``POST /admin/reload``: load the configured model again and swap it in atomically."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmroute.serving.deps import AdminOnly, ServicesDep
from llmroute.serving.errors import ServiceError
from llmroute.serving.reloading import reload_router

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=AdminOnly)


@router.post("/reload")
async def reload(services: ServicesDep) -> dict[str, Any]:
    """200 with the new version; 503 with the reason when loading fails (the current router stays)."""
    outcome = await reload_router(services)
    if not outcome.ok:
        raise ServiceError(
            503, "reload_failed",
            f"reloading {services.settings.model} failed, still serving {outcome.router_version}: {outcome.error}",
            router_version=outcome.router_version,
        )
    return {"reloaded": True, "router_version": outcome.router_version, "previous_version": outcome.previous_version}
