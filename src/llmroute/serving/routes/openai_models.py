"""``GET /v1/models`` (OpenAI-compatible): what an OpenAI client may put in ``model``.

OpenAI-compatible front-ends list the models first. The list holds ``llmroute`` (routed at the router's
default target), its target variants ``llmroute:<target>`` (:data:`TARGET_VARIANTS`; any other
``llmroute:<target>`` works too), and every model the served router chooses from, by catalog name:
naming one pins the request to that model (no routing; still logged, the request's constraints still
apply; see :mod:`llmroute.serving.routes.chat`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmroute.serving.deps import Authenticated, ServedDep

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=Authenticated)

TARGET_VARIANTS = ("80%", "90%", "95%", "100%")
ROUTED = "llmroute"


@router.get("/models")
async def list_models(served: ServedDep) -> dict[str, Any]:
    llm_router = served.router
    created = 0
    data: list[dict[str, Any]] = [
        {"id": ROUTED, "object": "model", "created": created, "owned_by": "llmroute",
         "llmroute": {"kind": "routed", "target": str(llm_router.default_target)}},
    ]
    for t in TARGET_VARIANTS:
        data.append({"id": f"{ROUTED}:{t}", "object": "model", "created": created, "owned_by": "llmroute",
                     "llmroute": {"kind": "routed", "target": t}})
    for name in llm_router.models:
        spec = llm_router.specs.get(name)
        data.append({
            "id": name, "object": "model", "created": created,
            "owned_by": spec.provider if spec is not None else "unknown",
            "llmroute": {"kind": "pinned", "aliases": list(spec.aliases) if spec is not None else []},
        })
    return {"object": "list", "data": data}
