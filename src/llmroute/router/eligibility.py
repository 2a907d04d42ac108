"""Which models a request may use: data policy, context window, budget, latency, allow/deny lists,
capabilities, and the models that are unavailable right now.

Unknown catalog figures are handled one way, the safe one: a model whose context window or typical
latency is unknown is assumed to have the *worst* value known for any of the router's models (the
smallest context window, the highest typical latency); when no model's value is known, a check that
needs it cannot be promised and excludes the model. Each candidate lists the figures that were
assumed (:func:`assumed_figures`), and an exclusion caused by an assumed figure says so. Unknown
prices are handled the same way by the cost model (:func:`llmroute.router.cost.assume_unknown_prices`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmroute.data.catalog import ModelSpec
from llmroute.router.data_policy import policy_exclusion
from llmroute.router.decision import Constraints

if TYPE_CHECKING:
    import numpy as np

UNAVAILABLE_PREFIX = "unavailable:"
LATENCY_HINT = "give typical_latency_ms in a --catalog file, or train on logs with latency_ms"


def only_unavailable(reasons: dict[str, str]) -> bool:
    """True when some model is excluded only for being unavailable right now (see :func:`exclusion_reasons`):
    a refusal that may succeed later (HTTP 503), not one the request's constraints cause (422)."""
    return any(r.startswith(UNAVAILABLE_PREFIX) for r in reasons.values())


@dataclass(frozen=True)
class Figures:
    """One model's context window and typical latency as the checks use them; ``*_assumed`` when the
    catalog did not know the figure and the worst known value stands in (None: nothing to assume)."""

    context_window: int | None
    context_assumed: bool
    latency_ms: float | None
    latency_assumed: bool


def resolve_figures(specs: Sequence[ModelSpec | None]) -> list[Figures]:
    """Per model, the figures the checks use (see the module docstring for the rule)."""
    windows = [s.context_window for s in specs if s is not None and s.context_window is not None]
    latencies = [s.typical_latency_ms for s in specs if s is not None and s.typical_latency_ms is not None]
    worst_window = min(windows) if windows else None
    worst_latency = max(latencies) if latencies else None
    out = []
    for s in specs:
        win = s.context_window if s is not None else None
        lat = s.typical_latency_ms if s is not None else None
        out.append(
            Figures(
                context_window=win if win is not None else worst_window,
                context_assumed=win is None,
                latency_ms=lat if lat is not None else worst_latency,
                latency_assumed=lat is None,
            )
        )
    return out


def assumed_figures(figures: Figures) -> tuple[str, ...]:
    """What a decision says about a model's unknown figures, e.g. ``context_window unknown: assumed
    4096 tokens (the smallest known)``."""
    notes = []
    if figures.context_assumed:
        notes.append(
            f"context_window unknown: assumed {figures.context_window} tokens (the smallest known)"
            if figures.context_window is not None
            else "context_window unknown and no model's is known"
        )
    if figures.latency_assumed:
        notes.append(
            f"typical_latency_ms unknown: assumed {figures.latency_ms:.0f} ms (the highest known)"
            if figures.latency_ms is not None
            else "typical_latency_ms unknown and no model's is known"
        )
    return tuple(notes)


def exclusion_reasons(
    constraints: Constraints,
    models: Sequence[str],
    specs: Sequence[ModelSpec | None],
    input_tokens: int,
    expected_cost: Sequence[float] | np.ndarray,
    cap_cost: Sequence[float] | np.ndarray | None = None,
    figures: Sequence[Figures] | None = None,
) -> list[str | None]:
    """Per model, why the request's constraints exclude it (None: eligible).

    The first failing constraint is named, in the order: data policy (``data_policy local_only: ...``),
    allow list, deny list, capabilities, context window, latency, cost, and last availability
    (``unavailable: ...``, from ``constraints.unavailable``; so a model named unavailable would
    otherwise be eligible). ``max_cost_usd`` is checked against ``cap_cost`` (the cost model's
    conservative figure; default: ``expected_cost``). Unknown context windows and latencies follow the
    module's rule (``figures``, default :func:`resolve_figures` of ``specs``): an unknown context window
    with no known one to assume still lets a model through (nothing would otherwise be routable), and
    an unknown latency with none to assume excludes the model from a latency limit.
    """
    c = constraints
    figs = list(figures) if figures is not None else resolve_figures(specs)
    caps = cap_cost if cap_cost is not None else expected_cost
    out: list[str | None] = []
    allowed = set(c.allowed_models) if c.allowed_models is not None else None
    excluded = set(c.excluded_models)
    down = dict(c.unavailable)
    for model, spec, cost, fig in zip(models, specs, caps, figs):
        names = {model, *(spec.aliases if spec else ())}
        needed = input_tokens + c.max_output_tokens
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
        elif fig.context_window is not None and needed > fig.context_window:
            reason = (
                ("context window unknown, assumed " if fig.context_assumed else "context window ")
                + f"{fig.context_window} tokens < {input_tokens} prompt tokens"
                + (f" + {c.max_output_tokens} output tokens" if c.max_output_tokens else "")
            )
        elif c.max_latency_ms is not None and fig.latency_ms is None:
            reason = f"typical latency unknown, cannot promise max_latency_ms ({LATENCY_HINT})"
        elif c.max_latency_ms is not None and fig.latency_ms is not None and fig.latency_ms > c.max_latency_ms:
            reason = (
                ("typical latency unknown, assumed " if fig.latency_assumed else "typical latency ")
                + f"{fig.latency_ms:.0f} ms > max_latency_ms {c.max_latency_ms:.0f}"
            )
        elif c.max_cost_usd is not None and cost > c.max_cost_usd:
            kind = "expected cost" if cap_cost is None else "cost up to"
            reason = f"{kind} ${cost:.6f} > max_cost_usd ${c.max_cost_usd:.6f}"
        elif model in down:
            reason = f"{UNAVAILABLE_PREFIX} {down[model]}"
        out.append(reason)
    return out
