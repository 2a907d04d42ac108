"""``POST /route``: which model should answer this prompt."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from llmroute.router.text import messages_to_prompt
from llmroute.serving.deps import Authenticated, RouterDep, ServicesDep
from llmroute.serving.decide import decide
from llmroute.serving.schemas import RouteRequest, RouteResponse

router = APIRouter(tags=["routing"], dependencies=Authenticated)


@router.post("/route")
def route(body: RouteRequest, llm_router: RouterDep, services: ServicesDep) -> RouteResponse:
    """Route one prompt (sync route: embedding and LightGBM run in FastAPI's thread pool)."""
    prompt = body.prompt if body.prompt is not None else messages_to_prompt(
        [{"role": m.role, "content": m.text()} for m in body.messages or []]
    )
    decision = decide(services, llm_router, prompt, body)
    return RouteResponse.from_decision(str(uuid.uuid4()), decision)
