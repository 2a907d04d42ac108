"""``POST /route``: which model should answer this prompt."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from llmroute.router.text import messages_to_prompt
from llmroute.serving.deps import Authenticated, RouterDep, ServicesDep
from llmroute.serving.decide import decide
from llmroute.serving.schemas import RouteRequest, RouteResponse
from llmroute.serving.state import run_cpu

router = APIRouter(tags=["routing"], dependencies=Authenticated)


@router.post("/route")
async def route(body: RouteRequest, llm_router: RouterDep, services: ServicesDep) -> RouteResponse:
    """Route one prompt (embedding and LightGBM run on the service's compute pool, see ``run_cpu``)."""
    prompt = body.prompt if body.prompt is not None else messages_to_prompt(
        [{"role": m.role, "content": m.text()} for m in body.messages or []]
    )
    decision = await run_cpu(services, decide, services, llm_router, prompt, body)
    return RouteResponse.from_decision(str(uuid.uuid4()), decision)
