"""One routing decision for a request (blocking CPU work: call from a sync route or a thread pool)."""

from __future__ import annotations

from llmroute.router.decision import Decision, NoEligibleModelError
from llmroute.router.router import Router
from llmroute.serving.errors import ServiceError
from llmroute.serving.schemas import RoutingOptions
from llmroute.serving.state import Services


def decide(services: Services, router: Router, prompt: str, opts: RoutingOptions) -> Decision:
    """Route ``prompt``; NoEligibleModelError passes through, other ValueErrors become 422."""
    services.compute.apply()
    try:
        decision = router.route(prompt, opts.constraints(), opts.quality_target(), opts.confidence, opts.task, opts.rule)
    except NoEligibleModelError:
        raise
    except ValueError as exc:
        raise ServiceError(422, "invalid_request", str(exc)) from exc
    services.metrics.routed.labels(decision.model).inc()
    return decision
