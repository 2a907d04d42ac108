"""Which models a request may use: data policy, context window, budget, latency, allow/deny lists,
capabilities, and the models that are unavailable right now."""

from __future__ import annotations

from collections.abc import Sequence

from llmroute.data.catalog import ModelSpec
from llmroute.router.data_policy import policy_exclusion
from llmroute.router.decision import Constraints

UNAVAILABLE_PREFIX = "unavailable:"


def only_unavailable(reasons: dict[str, str]) -> bool:
    """True when some model is excluded only for being unavailable right now (see :func:`exclusion_reasons`):
    a refusal that may succeed later (HTTP 503), not one the request's constraints cause (422)."""
    return any(r.startswith(UNAVAILABLE_PREFIX) for r in reasons.values())


def exclusion_reasons(
    constraints: Constraints,
    models: Sequence[str],
    specs: Sequence[ModelSpec | None],
    input_tokens: int,
    expected_cost: Sequence[float],
) -> list[str | None]:
    """Per model, why the request's constraints exclude it (None: eligible).

    The first failing constraint is named, in the order: data policy (``data_policy local_only: ...``),
    allow list, deny list, capabilities, context window, latency, cost, and last availability
    (``unavailable: ...``, from ``constraints.unavailable``; so a model named unavailable would
    otherwise be eligible). Unknown catalog values do not exclude a model from the context
    window check (the model is assumed to fit) but do exclude it from a latency limit (an unknown
    latency cannot be promised).
    """
    c = constraints
    out: list[str | None] = []
    allowed = set(c.allowed_models) if c.allowed_models is not None else None
    excluded = set(c.excluded_models)
    down = {m: why for m, why in c.unavailable}
    for model, spec, cost in zip(models, specs, expected_cost):
        names = {model, *(spec.aliases if spec else ())}
        reason: str | None = policy_exclusion(c.data_policy, spec)
        if reason is not None:
            pass
        elif allowed is not None and not names & allowed:
            reason = "not in allowed_models"
        elif names & excluded:
            reason = "in excluded_models"
        elif c.required_capabilities and (
            spec is None or not set(c.required_capabilities) <= set(spec.capabilities)
        ):
            have = ", ".join(spec.capabilities) if spec else "unknown"
            reason = f"lacks required capabilities {list(c.required_capabilities)} (has: {have})"
        elif spec is not None and spec.context_window is not None and (
            input_tokens + c.max_output_tokens > spec.context_window
        ):
            reason = (
                f"context window {spec.context_window} tokens < {input_tokens} prompt tokens"
                + (f" + {c.max_output_tokens} output tokens" if c.max_output_tokens else "")
            )
        elif c.max_latency_ms is not None and (spec is None or spec.typical_latency_ms is None):
            reason = "typical latency unknown, cannot promise max_latency_ms"
        elif c.max_latency_ms is not None and spec is not None and spec.typical_latency_ms is not None and (
            spec.typical_latency_ms > c.max_latency_ms
        ):
            reason = f"typical latency {spec.typical_latency_ms:.0f} ms > max_latency_ms {c.max_latency_ms:.0f}"
        elif c.max_cost_usd is not None and cost > c.max_cost_usd:
            reason = f"expected cost ${cost:.6f} > max_cost_usd ${c.max_cost_usd:.6f}"
        elif model in down:
            reason = f"{UNAVAILABLE_PREFIX} {down[model]}"
        out.append(reason)
    return out
