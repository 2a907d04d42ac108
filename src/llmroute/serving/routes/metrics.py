"""``GET /metrics`` in the Prometheus text format (this app's own registry)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from llmroute.serving.deps import Authenticated, ServicesDep
from llmroute.serving.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["metrics"], dependencies=Authenticated)


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    log = services.decision_log
    services.metrics.observe_decision_log(log.stats() if log is not None else None)
    current = services.holder.current
    if current is not None:
        services.metrics.observe_health(services.health.snapshot(current.specs))
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
