"""One routing decision for a request (blocking CPU work: call from a sync route or a thread pool)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from llmroute.data.decision_log import DecisionRecord
from llmroute.router.decision import Decision, NoEligibleModelError, RouteQuery
from llmroute.router.router import Router
from llmroute.serving.decision_logging import (
    CapturingEmbedder,
    decision_record,
    embedder_spec,
)
from llmroute.serving.errors import ServiceError
from llmroute.serving.exploration import Explorer, explore
from llmroute.serving.schemas import RoutingOptions
from llmroute.serving.state import Services


def decide(services: Services, router: Router, prompt: str, opts: RoutingOptions) -> Decision:
    """Route ``prompt``; NoEligibleModelError passes through, other ValueErrors become 422.

    Concurrent calls for the same ``router`` are routed together (:mod:`llmroute.serving.batching`);
    each gets the decision it would get alone. The embedding it was made with is left in the calling
    thread's :class:`CapturingEmbedder` for the decision log."""
    services.compute.apply()
    try:
        query = RouteQuery(prompt, opts.constraints(), opts.quality_target(), opts.confidence, opts.task, opts.rule)
        decision, embedding = services.batchers.route(router, query)
    except NoEligibleModelError:
        raise
    except ValueError as exc:
        raise ServiceError(422, "invalid_request", str(exc)) from exc
    if isinstance(router.embedder, CapturingEmbedder):
        router.embedder.remember(embedding)
    services.metrics.routed.labels(decision.model).inc()
    return decision


def choose(decision: Decision, share: float = 0.0, explorer: Explorer | None = None) -> tuple[Decision, float]:
    """The logging policy: the decision the service acts on and the probability it had of being made.

    The one place where the propensity is decided. With exploration ``share`` 0 (the default) the
    router's choice is always taken (propensity 1.0); otherwise :func:`~llmroute.serving.exploration.explore`
    may replace the chosen model by another eligible one (marked ``extra["explored"]``) and returns the
    served model's probability: ``1 - share`` for the router's pick, ``share / k`` for an explored one.
    """
    if share <= 0.0:
        return decision, 1.0
    return explore(decision, share, explorer if explorer is not None else Explorer())


@dataclass(frozen=True)
class Routed:
    """A decision as served: its id (returned to the client), and its log record (None when logging is off)."""

    decision_id: str
    decision: Decision
    propensity: float
    record: DecisionRecord | None


def route_request(
    services: Services, router: Router, prompt: str, opts: RoutingOptions, source: str
) -> Routed:
    """:func:`decide`, :func:`choose`, and the decision's log record, all in the calling (compute) thread."""
    capture = router.embedder if isinstance(router.embedder, CapturingEmbedder) else None
    if capture is not None:
        capture.forget()
    share = services.settings.exploration_share_for(opts.tenant)
    decision, propensity = choose(decide(services, router, prompt, opts), share, services.explorer)
    if decision.extra.get("explored"):
        services.metrics.explored.labels(decision.model).inc()
    decision_id = str(uuid.uuid4())
    record = None
    if services.decision_log is not None:
        record = decision_record(
            decision, decision_id=decision_id, prompt=prompt, constraints=opts.constraints(),
            embedding=capture.last() if capture is not None else None, embedder=embedder_spec(router),
            tenant=opts.tenant, user=opts.user, propensity=propensity, source=source,
            redact=services.settings.redact_prompts,
        )
    return Routed(decision_id, decision, propensity, record)
