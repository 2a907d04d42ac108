"""The cascade: call the routed model, escalate on failure, timeout or low confidence.

Order. The first attempt goes to the routed model. The next model is the cheapest untried eligible
candidate that is more expensive (by the router's expected cost) **and** has a higher router
probability than the model just tried. When a call *failed* and no such model exists, the untried
eligible model with the highest probability is tried instead, so a request is not lost while any
eligible model is left. At most ``max_attempts`` models are called.

Confidence of an answer. The router's pre-call probability that the model meets the target; when the
provider returns token logprobs, the mean of that probability and exp(mean token logprob). A learned
post-call scorer (judging the answer text) is a later step; it would replace :func:`answer_confidence`.

Result. The successful answer with the highest confidence (the latest on ties); none if every
attempt failed. Cost of an attempt: the provider's ``usage.cost`` if given, else catalog prices x
``usage`` tokens, else x tokens counted locally; failed attempts are counted as costing 0.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from llmroute.data.catalog import ModelSpec
from llmroute.data.tokens import count_tokens
from llmroute.router.decision import Candidate, Decision
from llmroute.serving.providers import CallResult


@dataclass(frozen=True)
class Attempt:
    model: str
    ok: bool
    error: str | None
    latency_ms: float
    cost_usd: float
    confidence: float | None
    router_probability: float
    tries: int
    error_kind: str | None = None  # timeout | http_<status> | connect | bad_response | no_endpoint
    escalated_because: str | None = None  # why the next model was tried after this one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CascadeResult:
    attempts: tuple[Attempt, ...]
    final_model: str | None
    final_body: dict[str, Any] | None

    @property
    def total_cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)


def next_model(candidates: Mapping[str, Candidate], current: str, tried: set[str], failed: bool) -> str | None:
    """The model to try after ``current`` (see module docstring), or None."""
    cur = candidates[current]
    open_ = [c for m, c in candidates.items() if c.eligible and m not in tried]
    better = [
        c for c in open_ if c.expected_cost_usd > cur.expected_cost_usd and c.probability > cur.probability
    ]
    if better:
        return min(better, key=lambda c: (c.expected_cost_usd, -c.probability)).model
    if failed and open_:
        return max(open_, key=lambda c: (c.probability, -c.expected_cost_usd)).model
    return None


def answer_confidence(router_probability: float, body: Mapping[str, Any]) -> float:
    """Router probability, averaged with exp(mean token logprob) when the provider returns logprobs."""
    try:
        tokens = body["choices"][0]["logprobs"]["content"]
        lps = [float(t["logprob"]) for t in tokens]
    except (KeyError, IndexError, TypeError, ValueError):
        return router_probability
    if not lps:
        return router_probability
    return 0.5 * (router_probability + math.exp(sum(lps) / len(lps)))


def attempt_cost(spec: ModelSpec | None, prompt: str, body: Mapping[str, Any]) -> float:
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    given = usage.get("cost")
    if isinstance(given, (int, float)) and not isinstance(given, bool):
        return float(given)
    if spec is None or spec.input_price_per_1m is None or spec.output_price_per_1m is None:
        return 0.0
    tin = usage.get("prompt_tokens")
    tout = usage.get("completion_tokens")
    if not isinstance(tin, int):
        tin = count_tokens(prompt)
    if not isinstance(tout, int):
        tout = count_tokens(str(body["choices"][0]["message"]["content"] or ""))
    return (tin * spec.input_price_per_1m + tout * spec.output_price_per_1m) / 1e6


Call = Callable[[str], Awaitable[CallResult]]


async def run_cascade(
    decision: Decision,
    prompt: str,
    call: Call,
    specs: Mapping[str, ModelSpec | None],
    threshold: float,
    max_attempts: int,
) -> CascadeResult:
    """Run the cascade for one request; ``call(model)`` makes one (retried) provider call."""
    candidates = {c.model: c for c in decision.candidates}
    attempts: list[Attempt] = []
    tried: set[str] = set()
    best: tuple[float, int, str, dict[str, Any]] | None = None
    model: str | None = decision.model
    while model is not None and len(attempts) < max_attempts:
        tried.add(model)
        prob = candidates[model].probability
        res = await call(model)
        if res.ok and res.body is not None:
            conf = answer_confidence(prob, res.body)
            cost = attempt_cost(specs.get(model), prompt, res.body)
            if best is None or conf >= best[0]:
                best = (conf, len(attempts), model, res.body)
            why = None if conf >= threshold else f"confidence {conf:.3f} < {threshold:.3f}"
            attempts.append(
                Attempt(model, True, None, res.latency_ms, cost, conf, prob, res.tries, escalated_because=why)
            )
            if why is None:
                break
            nxt = next_model(candidates, model, tried, failed=False)
        else:
            attempts.append(
                Attempt(
                    model, False, res.error, res.latency_ms, 0.0, None, prob, res.tries,
                    error_kind=res.kind, escalated_because=res.kind or "error",
                )
            )
            nxt = next_model(candidates, model, tried, failed=True)
        model = nxt
    # only attempts followed by another one keep the reason they were escalated from
    attempts = [a if i < len(attempts) - 1 else replace(a, escalated_because=None) for i, a in enumerate(attempts)]
    if best is None:
        return CascadeResult(tuple(attempts), None, None)
    return CascadeResult(tuple(attempts), best[2], best[3])
