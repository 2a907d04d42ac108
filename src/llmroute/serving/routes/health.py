"""Liveness and readiness (no authentication)."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from llmroute.serving.candidate import check_server_started
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
    model's health), and 503 while the decision log refuses new records (requests would be answered
    503). ``decision_log``: ``ok``, ``off`` or ``degraded: <why>`` (the database or spool disk refuses
    writes; records are kept and replayed). ``worker_pid``: the process that answered (one of the
    ``llmroute serve --workers N``), so a check can tell that every worker is ready. ``isolated_check``:
    ``ready`` once the process that reload checks fork from is up (``starting`` before; ``off`` without
    reload isolation). ``prepared_version``: the version polling prepared ahead of its promotion
    (checked and loaded: a promotion to it is a swap), when there is one."""
    current = services.holder.current
    log = services.decision_log
    if log is None:
        logging_state = "off"
    else:
        reason = log.degraded_reason()
        logging_state = "ok" if reason is None else f"degraded: {reason}"
    if current is None:
        return JSONResponse(
            {"status": "not_ready", "reason": services.holder.load_error or "router loading",
             "decision_log": logging_state}, status_code=503
        )
    if log is not None and not log.writer.accepting():
        return JSONResponse(
            {"status": "not_ready", "reason": "the decision log is full: its database and spool disk refuse writes",
             "router_version": current.version, "decision_log": logging_state}, status_code=503
        )
    down = services.health.unavailable(current.specs)
    healthy = [m for m in current.models if m not in down]
    if not healthy:
        return JSONResponse(
            {"status": "not_ready", "reason": "no model can take a call now", "unavailable": down,
             "router_version": current.version, "decision_log": logging_state},
            status_code=503,
        )
    body: dict[str, Any] = {
        "status": "ready", "router_version": current.version, "models_available": len(healthy),
        "unavailable": down, "decision_log": logging_state, "worker_pid": os.getpid(),
        "isolated_check": ("ready" if check_server_started() else "starting") if services.settings.reload_isolation
        else "off",
    }
    if services.holder.prepared_version is not None:
        body["prepared_version"] = services.holder.prepared_version
    last = services.holder.last_reload
    if last is not None and not last.ok:
        body["last_reload_error"] = {"at": last.at, "error": last.error}
    return body
