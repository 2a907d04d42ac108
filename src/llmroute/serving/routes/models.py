"""``GET /models``: the models the served router chooses from, with their catalog data and health
(breaker state, rate limits; see :mod:`llmroute.serving.health`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmroute.serving.deps import Authenticated, ServedDep, ServicesDep

router = APIRouter(tags=["models"], dependencies=Authenticated)

_PUBLIC = (
    "provider", "context_window", "input_price_per_1m", "output_price_per_1m", "typical_latency_ms",
    "capabilities", "local", "aliases", "rate_limit_rpm", "rate_limit_tpm",
)


@router.get("/models")
async def models(served: ServedDep, services: ServicesDep) -> dict[str, Any]:
    llm_router = served.router
    health = services.health.snapshot(llm_router.specs)
    out = []
    for name in llm_router.models:
        spec = llm_router.specs.get(name)
        info = {k: getattr(spec, k) for k in _PUBLIC} if spec is not None else None
        out.append({"name": name, "in_catalog": spec is not None, "catalog": info, "health": health.get(name)})
    return {
        "router_version": llm_router.version,
        "default_rule": llm_router.default_rule,
        "default_target": str(llm_router.default_target),
        "response_scorer": served.scorer is not None,
        "data_policy": services.settings.data_policy,
        "data_policy_by_tenant": services.settings.data_policy_by_tenant,
        "models": out,
    }
