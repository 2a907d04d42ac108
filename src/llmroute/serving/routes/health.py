"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from llmroute.serving.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", response_model=None)
async def ready(services: ServicesDep) -> dict[str, Any] | JSONResponse:
    """200 once a router is loaded and at least one of its models can take a call (its circuit breaker
    is not open and its rate limit not spent); 503 with the reason otherwise (the load error, or every
    model's health)."""
    current = services.holder.current
    if current is None:
        return JSONResponse(
            {"status": "not_ready", "reason": services.holder.load_error or "router loading"}, status_code=503
        )
    down = services.health.unavailable(current.specs)
    healthy = [m for m in current.models if m not in down]
    if not healthy:
        return JSONResponse(
            {"status": "not_ready", "reason": "no model can take a call now", "unavailable": down,
             "router_version": current.version},
            status_code=503,
        )
    return {
        "status": "ready", "router_version": current.version, "models_available": len(healthy),
        "unavailable": down,
    }
