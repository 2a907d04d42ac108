"""``POST /route``: which model should answer this prompt."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response

from llmroute.router.text import messages_to_prompt
from llmroute.serving.budget_control import route_with_budgets
from llmroute.serving.decision_logging import log_refused
from llmroute.serving.request_context import KEY_HEADERS, ClientContextDep
from llmroute.serving.schemas import RouteRequest, RouteResponse
from llmroute.serving.state import run_cpu

router = APIRouter(tags=["routing"])


@router.post("/route", response_model=RouteResponse, openapi_extra=KEY_HEADERS)
async def route(body: RouteRequest, context: ClientContextDep) -> Response:
    """Route one prompt (embedding and LightGBM run on the service's compute pool, see ``run_cpu``).

    The decision is logged (source ``route``) under the ``decision_id`` returned; send
    ``POST /feedback`` with that id to score the answer the caller got from the chosen model (and
    report its ``cost_usd`` for the budgets). 429 when a spent block budget applies.

    The answer is validated once, when the :class:`RouteResponse` is built, and serialised by pydantic
    straight to bytes (returning the model would make FastAPI dump, validate and encode it again). The key
    check, the router and the key id come from one dependency (:mod:`llmroute.serving.request_context`).
    """
    started = time.perf_counter()
    services, llm_router, key_id = context.services, context.served.router, context.key_id
    prompt = body.prompt if body.prompt is not None else messages_to_prompt(
        [{"role": m.role, "content": m.text()} for m in body.messages or []]
    )
    admitted, routed = await run_cpu(  # the budget check (429 on a spent block budget), then routing
        services, route_with_budgets, services, llm_router, prompt, body, "route", started, key_id)
    if services.budgets is not None and admitted.admission is not None:
        services.budgets.remember(routed.decision_id, admitted.admission.subjects)
    if routed.record is not None and services.decision_log is not None and not services.decision_log.submit(routed.record):
        raise log_refused()
    answer = RouteResponse.from_decision(routed.decision_id, routed.decision, routed.experiment, routed.arm)
    return Response(answer.model_dump_json(), media_type="application/json")
