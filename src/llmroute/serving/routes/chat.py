"""``POST /v1/chat/completions`` (OpenAI-compatible): route, then call the model through the cascade.

``model`` is ``llmroute`` or ``llmroute:<target>``, or one of the router's models by catalog name or
alias: that pins the request to the model (no routing, no exploration or experiment, no escalation to
another model; the request's constraints still apply and the decision is logged; a model the router
does not serve is 404 ``model_not_found``). The answer is the final model's OpenAI response
with ``model`` set to that model and a non-standard ``llmroute`` field (decision, attempts, total
cost); headers ``X-LLMRoute-Model``, ``X-LLMRoute-Decision-Id``, ``X-LLMRoute-Attempts``. When every
attempt fails the status is 502 with the same ``llmroute`` field. With ``llmroute.best_of_n`` or
``llmroute.majority_vote`` the models are called at once instead of in a cascade
(see :mod:`llmroute.serving.cascade`); when the router folder has a response scorer, it judges every
answer.

Operating points: when the served scorer comes with the cascade operating points fitted by
``llmroute train`` (:class:`llmroute.router.cascade_policy.OperatingPoints`), the request's quality target
(``llmroute:95%``; the router's default target otherwise) picks the router knob, the per-attempt
acceptance thresholds and the scorer weight jointly: the cheapest point whose out-of-fold validation
quality meets the target (setting ``cascade_operating_points``; not with an explicit ``confidence``,
another ``rule`` or a running A/B experiment). The ``llmroute`` field says which point served.

Data policy and health: the request is routed under its data policy (the stricter of its own
``data_policy`` and its tenant's) and without the models whose provider is unhealthy right now
(:func:`llmroute.serving.decide.request_constraints`); every call then passes the last gate of
:class:`llmroute.serving.dispatch.Dispatcher`. When local models failed and an API model answered, the
``llmroute`` field has ``fallback: {from, to}`` and the header ``X-LLMRoute-Fallback: api``. Under
``local_only``, when every local model tried failed, the status is 503 (``local_models_failed``) and
no API model was called.

``stream: true``: the cascade reads the attempts it may still escalate whole and streams the last
one's answer through as it arrives (:mod:`llmroute.serving.streaming`; the ``llmroute`` field comes
in the last event, the headers are the same). An answer that was already complete (a confident
cheaper model, or an ensemble) is sent as one content event.

Budgets (:mod:`llmroute.serving.budget_control`): checked before routing (429 when a spent block
budget applies; pacing and downgrade adjust the options), and the total cost of every attempt is
booked in the spend ledger before the answer is returned (streamed: as the stream ends). A request
that ends before its cascade does (the client hung up, so the request was cancelled) is charged for
the attempts whose provider had already answered: they were billed.

Logging: the decision (source ``chat``) is logged before the first call, and the outcome (see
:func:`llmroute.serving.decision_logging.outcome_record`: the answered model, every attempt, the
total cost of all attempts) once the cascade or ensemble is done, also when every attempt failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmroute.providers.chat import ChatProvider, resolve_endpoint
from llmroute.router.cascade_policy import OperatingPoint
from llmroute.router.data_policy import api_fallback
from llmroute.router.text import messages_to_prompt
from llmroute.serving.budget_control import charge_soon, must_await_charge, route_with_budgets
from llmroute.serving.cascade import (
    CascadeResult,
    Confidence,
    Judge,
    attempt_cost,
    run_cascade,
    run_ensemble,
)
from llmroute.serving.decision_logging import log_refused, outcome_record
from llmroute.serving.dispatch import Dispatcher
from llmroute.serving.errors import ServiceError, error_body
from llmroute.serving.request_context import KEY_HEADERS, ClientContextDep
from llmroute.serving.schemas import ChatCompletionRequest, route_response_dict
from llmroute.serving.state import run_cpu
from llmroute.serving.streaming import relay

log = logging.getLogger("llmroute.serving")
router = APIRouter(prefix="/v1", tags=["openai"])


# the key check, the router and the key id in one dependency (llmroute.serving.request_context): same checks,
# same order, about 0.1 ms less of event-loop CPU a request than four dependencies with header parameters
@router.post("/chat/completions", response_model=None, openapi_extra=KEY_HEADERS)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, context: ClientContextDep
) -> JSONResponse | StreamingResponse:
    started = time.perf_counter()
    services, served, key_id = context.services, context.served, context.key_id
    llm_router = served.router
    opts = body.routing()
    ensemble = opts.ensemble()
    if ensemble is not None and ensemble[1] > services.settings.max_ensemble:
        raise ServiceError(
            422, "invalid_request", f"llmroute.{ensemble[0]}: at most {services.settings.max_ensemble} models, "
            f"got {ensemble[1]}",
        )
    pinned = _pinned(llm_router, body.pinned_model())
    if pinned is not None and ensemble is not None:
        raise ServiceError(422, "invalid_request", f"llmroute.{ensemble[0]} needs model 'llmroute', not a pinned model")
    prompt = messages_to_prompt([{"role": m.role, "content": m.text()} for m in body.messages])
    point = _operating_point(services, served, opts) if ensemble is None and pinned is None else None
    knob = point.knob if point is not None else None
    admitted, routed = await run_cpu(  # the budget check (429 on a spent block budget), then routing
        services, route_with_budgets, services, llm_router, prompt, opts, "chat", started, key_id, knob, pinned)
    decision, decision_id = routed.decision, routed.decision_id
    decision_log = services.decision_log
    # before the calls: a request cancelled mid-cascade keeps its decision; a decision that cannot be
    # logged is not served (nothing is paid for that the log would never show)
    if decision_log is not None and routed.record is not None and not decision_log.submit(routed.record):
        raise log_refused()

    calls = Dispatcher(
        ChatProvider(services.http, services.settings.provider_client_config()), services.settings, llm_router.specs,
        services.health, services.metrics, routed.data_policy, prompt, body.provider_payload(),
    )
    paid: list[float] = []  # what each provider call that answered cost so far (a hang-up must still be charged)

    async def call(model: str) -> Any:
        res = await calls.call(model)
        if res.ok and res.body is not None:
            paid.append(attempt_cost(llm_router.specs.get(model), prompt, res.body))
        return res

    open_stream = calls.open_stream

    def credentials(model: str) -> tuple[str | None, str | None]:
        endpoint = resolve_endpoint(model, llm_router.specs.get(model), calls.provider.config)
        return endpoint.base_url, endpoint.api_key

    charged: list[Any] = []

    def finish(result: CascadeResult, log_outcome: bool = True) -> None:
        _record(services, result, cascade=ensemble is None)
        urgent = must_await_charge(services.budgets, admitted)  # a budget counts it: the answer waits for it
        charged.append((charge_soon(services.budgets, admitted, decision_id, result.total_cost_usd, urgent=urgent),
                        urgent))
        if services.experiment is not None and routed.arm is not None:
            services.experiment.monitor.correct_cost(
                routed.arm, routed.expected_cost(), result.total_cost_usd, result.final_body is not None
            )
        if log_outcome:
            submit_outcome(result)

    def submit_outcome(result: CascadeResult) -> None:
        if decision_log is not None:
            decision_log.submit(outcome_record(decision_id, result))

    confidence = Confidence(services.settings.scorer_weight, _judge(services, served.scorer, prompt))
    if ensemble is not None:
        work = run_ensemble(decision, prompt, call, llm_router.specs, ensemble[1], ensemble[0], confidence)
    else:
        rule = None
        if point is not None:
            rule = replace(point.cascade_rule(),
                           max_attempts=min(point.max_attempts, services.settings.cascade_max_attempts))
        work = run_cascade(
            decision, prompt, call, llm_router.specs,
            services.settings.cascade_confidence, services.settings.cascade_max_attempts, confidence,
            open_stream if body.stream else None, rule, credentials,
        )
    try:
        result = await _unless_client_leaves(request, work)
    except BaseException:
        # the request was cancelled (the client hung up, or the server is stopping) or the cascade broke: the
        # providers billed the attempts that answered, so they are charged all the same (in the background)
        if paid:
            charge_soon(services.budgets, admitted, decision_id, sum(paid))
        raise
    if result is None:  # the client hung up mid-cascade: no further calls; what was paid is charged
        if paid:
            charge_soon(services.budgets, admitted, decision_id, sum(paid))
        log.info("chat %s: the client hung up mid-cascade after %d paid attempt(s); further calls cancelled",
                 decision_id, len(paid))
        return JSONResponse(error_body("client_closed_request", "the client closed the connection mid-cascade"),
                            status_code=499)
    info = {
        "decision_id": decision_id,
        "decision": route_response_dict(decision_id, decision, routed.experiment, routed.arm),
        "attempts": [a.to_dict() for a in result.attempts],
        "total_cost_usd": result.total_cost_usd,
        "mode": ensemble[0] if ensemble else "cascade",
        "scorer": served.scorer is not None and services.settings.scorer_weight > 0,
        "data_policy": routed.data_policy,
    }
    if point is not None:
        info["operating_point"] = {
            "knob": point.knob, "rule": point.rule, "thresholds": list(point.thresholds),
            "scorer_weight": point.scorer_weight, "validation_quality": point.validation_quality,
            "validation_cost_usd": point.validation_cost,
        }
    if result.ensemble is not None:
        info["ensemble"] = result.ensemble
    answered = result.stream.model if result.stream is not None else result.final_model
    fallback = api_fallback(result.attempts, answered, llm_router.specs)
    if fallback is not None:
        info["fallback"] = fallback  # local models failed, an API model answered
    if result.stream is not None:
        model = result.stream.model
        events = relay(
            result, prompt=prompt, spec=llm_router.specs.get(model),
            router_probability=next(c.probability for c in decision.candidates if c.model == model),
            confidence=confidence, info=info, on_done=finish,
        )
        headers = _headers(decision_id, len(result.attempts) + 1, model, fallback)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    finish(result, log_outcome=False)
    try:
        response = _answer(result, routed.data_policy, info, body.stream,
                           _headers(decision_id, len(result.attempts), result.final_model or "", fallback))
        charge, urgent = charged[0]
        if charge is not None and urgent:
            await charge  # a budget counts it: in the ledger before the answer leaves (booked while it was built)
    finally:
        # the outcome is logged before the answer leaves too, and once an awaited charge is in (also when it
        # failed): submitted earlier, its insert by the log's writer competed with the charge for SQLite's write
        # lock, and a charge that finds the lock taken waits for it
        submit_outcome(result)
    return response


def _answer(result: CascadeResult, data_policy: str, info: dict[str, Any], stream: bool,
            headers: dict[str, str]) -> JSONResponse | StreamingResponse:
    """The response of a finished (not streamed-through) cascade or ensemble: the final model's answer with the
    ``llmroute`` field, or the 502 (503 under ``local_only``) when every attempt failed."""
    if result.final_body is None or result.final_model is None:
        errors = "; ".join(f"{a.model}: {a.error}" for a in result.attempts)
        if data_policy == "local_only":
            return JSONResponse(
                {**error_body("local_models_failed", f"data_policy local_only: every local model tried failed "
                              f"({errors or 'none could be called'}); the prompt was not sent to any API model"),
                 "llmroute": info},
                status_code=503, headers={**headers, "Retry-After": "5"},
            )
        return JSONResponse(
            {**error_body("all_models_failed", f"every attempted model failed ({errors})"), "llmroute": info},
            status_code=502, headers=headers,
        )
    answer = {**result.final_body, "model": result.final_model, "llmroute": info}
    if stream:
        return StreamingResponse(_sse(answer), media_type="text/event-stream", headers=headers)
    return JSONResponse(answer, headers=headers)


async def _unless_client_leaves(request: Request, work: Coroutine[Any, Any, CascadeResult]) -> CascadeResult | None:
    """``work``'s result, or None when the client disconnects first (``work`` is then cancelled: no provider call
    is started for a client that is gone). The request body has been read, so the next ASGI message is the
    disconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        gone.cancel()
    return None if task.cancelled() else task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _pinned(llm_router: Any, name: str | None) -> str | None:
    """The router model (catalog name) a request pins by name or alias; 404 ``model_not_found`` (the
    OpenAI error) for a model the router does not serve."""
    if name is None:
        return None
    for m in llm_router.models:
        spec = llm_router.specs.get(m)
        if name == m or (spec is not None and name in spec.aliases):
            return m
    raise ServiceError(
        404, "model_not_found",
        f"model {name!r} is not served here: use 'llmroute', 'llmroute:<target>' (e.g. 'llmroute:95%') or one of "
        + ", ".join(llm_router.models) + " (GET /v1/models lists them)",
        code="model_not_found",
    )


def _headers(decision_id: str, attempts: int, model: str, fallback: dict[str, Any] | None = None) -> dict[str, str]:
    out = {"X-LLMRoute-Decision-Id": decision_id, "X-LLMRoute-Attempts": str(attempts), "X-LLMRoute-Model": model}
    if fallback is not None:
        out["X-LLMRoute-Fallback"] = "api"
    return out


def _operating_point(services: Any, served: Any, opts: Any) -> OperatingPoint | None:
    """The cascade operating point of the request's quality target (the router's default target when
    none is asked), or None: no operating points served, turned off, the scorer ignored, an A/B
    experiment running, or the request asks a confidence or another rule itself."""
    settings = services.settings
    points = getattr(served.scorer, "operating_points", None) if served.scorer is not None else None
    if (points is None or not points.cascade or not settings.cascade_operating_points or settings.scorer_weight <= 0
            or services.experiment is not None or opts.confidence is not None):
        return None
    try:
        target = opts.quality_target() or served.router.default_target
    except ValueError as exc:
        raise ServiceError(422, "invalid_request", str(exc)) from exc
    point, _ = points.point_for(target)
    if opts.rule is not None and opts.rule != point.rule:
        return None
    return point


def _judge(services: Any, scorer: Any, prompt: str) -> Judge | None:
    """The scorer as an async judge (CPU work in the thread pool), or None without one."""
    if scorer is None or services.settings.scorer_weight <= 0:
        return None

    def score(model: str, text: str, earlier: Sequence[tuple[str, str]]) -> float:
        services.compute.apply()
        return float(scorer.score([prompt], [text], [model], [list(earlier)])[0])

    async def judge(model: str, text: str, earlier: Sequence[tuple[str, str]] = ()) -> float | None:
        return await run_cpu(services, score, model, text, earlier)

    return judge


def _record(services: Any, result: CascadeResult, cascade: bool = True) -> None:
    m = services.metrics
    for i, a in enumerate(result.attempts):
        m.cost.labels(a.model).inc(a.cost_usd)
        if not a.ok:
            m.provider_errors.labels(a.model, a.error_kind or "error").inc()
            if a.error_kind in ("http_401", "http_403"):
                m.provider_config_errors.labels(a.model).inc()
        if cascade and i < len(result.attempts) - 1:
            m.escalations.labels("failure" if not a.ok else "low_confidence").inc()


async def _sse(answer: dict[str, Any]) -> AsyncIterator[str]:
    base = {
        "id": answer.get("id", f"chatcmpl-{uuid.uuid4().hex}"),
        "object": "chat.completion.chunk",
        "created": answer.get("created", int(time.time())),
        "model": answer["model"],
    }
    choice = answer["choices"][0]
    content = choice["message"].get("content") or ""
    first = {"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}
    yield f"data: {json.dumps({**base, 'choices': [first]})}\n\n"
    last: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}
    tail = {**base, "choices": [last], "usage": answer.get("usage"), "llmroute": answer["llmroute"]}
    yield f"data: {json.dumps(tail)}\n\n"
    yield "data: [DONE]\n\n"
