"""The cascade: call the routed model, escalate on failure, timeout or low confidence.

The decisions -- order of models, how confidence combines, accept or escalate, which answer is
delivered -- are :mod:`llmroute.router.cascade_policy`'s (:class:`~llmroute.router.cascade_policy.CascadeWalk`),
the same code the offline evaluation replays logged answers through; this module only makes the calls.
Confidence signals: the router's pre-call probability (always there), the post-call answer scorer's
probability (:mod:`llmroute.router.answer_scorer`, when the served router folder has one; it sees the
answers of the earlier attempts of the same request) and exp(mean token logprob) when the provider returns
logprobs. Without an explicit :class:`~llmroute.router.cascade_policy.CascadeRule` the rule is one
threshold for every attempt (``threshold``), ``max_attempts`` and the scorer weight of ``confidence``.
Every attempt records each signal next to the combined confidence.

Ensembles (:func:`run_ensemble`), asked per request: ``best_of_n`` calls the N most promising eligible
models concurrently and keeps the answer with the highest confidence; ``majority_vote`` calls N models,
normalises the answers (:func:`normalise_answer`) and keeps the most common one (ties: the group whose
best member has the highest confidence), answering with that group's most confident member. ``mean``
and ``median`` call N models, read each successful answer's number
(:func:`llmroute.router.numeric_answers.parse_number`; answers without one are left out and listed),
and answer with the mean or median of the numbers, in the body of the most confident numeric member;
with fewer than two numbers they fall back to the majority vote (and say so in
:attr:`CascadeResult.ensemble`). Every call's cost is counted.

Streaming (``open_stream`` given, for ``stream: true`` requests). Attempts that may still be
escalated are read whole (their confidence needs the whole answer); the attempt that cannot be
escalated any more on low confidence -- the ``max_attempts``-th, or one with no more expensive and
more probable model left -- is asked for a stream instead, and the cascade ends as soon as that
stream has started: :attr:`CascadeResult.stream` is relayed to the client as it arrives (see
:mod:`llmroute.serving.streaming`), and that answer is delivered whatever its confidence. A stream
that fails to start (error status, timeout, connection error) is a failed attempt like any other and
the cascade goes on. So a streamed request escalates exactly like an unstreamed one, and the first
token comes as soon as the last model answers.

Result. The successful answer with the highest confidence (the latest on ties); none if every
attempt failed. Cost of an attempt: the provider's ``usage.cost`` if given, else catalog prices x
``usage`` tokens, else x tokens counted locally; failed attempts are counted as costing 0.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from llmroute.data.catalog import ModelSpec
from llmroute.data.tokens import count_tokens
from llmroute.providers.chat import CallResult, OpenStream
from llmroute.router import numeric_answers
from llmroute.router.agreement import normalise_answer
from llmroute.router.cascade_policy import CascadeRule, CascadeWalk, combine_confidence, next_model
from llmroute.router.decision import Decision


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
    scorer_probability: float | None = None  # post-call response scorer, when one is loaded
    logprob_confidence: float | None = None  # exp(mean token logprob), when the provider returned them
    answer_key: str | None = None  # the normalised answer (majority vote only)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, in declaration order: what ``dataclasses.asdict`` gives for these flat
        fields, without its recursive copy (this runs twice on every chat request)."""
        return {name: getattr(self, name) for name in _ATTEMPT_FIELDS}


_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))


@dataclass(frozen=True)
class CascadeResult:
    attempts: tuple[Attempt, ...]
    final_model: str | None
    final_body: dict[str, Any] | None
    stream: OpenStream | None = None  # the final model's answer, started but not read (its attempt is not in attempts yet)
    ensemble: dict[str, Any] | None = None  # how a numeric ensemble combined its answers (mean / median)

    @property
    def total_cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)


def logprob_signal(body: Mapping[str, Any]) -> float | None:
    """exp(mean token logprob) of the first choice, or None when the provider returned no logprobs."""
    try:
        tokens = body["choices"][0]["logprobs"]["content"]
        lps = [float(t["logprob"]) for t in tokens]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if not lps:
        return None
    return math.exp(sum(lps) / len(lps))


def answer_confidence(router_probability: float, body: Mapping[str, Any]) -> float:
    """Router probability, averaged with exp(mean token logprob) when the provider returns logprobs."""
    return combine_confidence(router_probability, None, logprob_signal(body))


def answer_text(body: Mapping[str, Any]) -> str:
    return str(body["choices"][0]["message"].get("content") or "")


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
OpenStreamCall = Callable[[str], Awaitable["CallResult | OpenStream"]]
# (model, answer text, the request's earlier (model, answer) pairs) -> scorer probability
Judge = Callable[[str, str, Sequence[tuple[str, str]]], Awaitable[float | None]]

__all__ = [
    "Attempt", "CascadeResult", "Confidence", "Judge", "answer_confidence", "answer_text", "attempt_cost",
    "combine_confidence", "ensemble_models", "logprob_signal", "next_model", "normalise_answer", "run_cascade",
    "run_ensemble",
]


@dataclass(frozen=True)
class Confidence:
    """How much an answer is trusted, after each signal (see module docstring)."""

    scorer_weight: float = 2.0
    judge: Judge | None = None

    async def signals(
        self, model: str, body: Mapping[str, Any], earlier: Sequence[tuple[str, str]] = ()
    ) -> tuple[float | None, float | None]:
        """(scorer probability, logprob signal) of an answer; ``earlier``: the request's earlier
        (model, answer) pairs."""
        scored = await self.judge(model, answer_text(body), tuple(earlier)) if self.judge is not None else None
        return scored, logprob_signal(body)

    async def __call__(
        self, model: str, router_probability: float, body: Mapping[str, Any], earlier: Sequence[tuple[str, str]] = ()
    ) -> tuple[float, float | None, float | None]:
        """(combined confidence, scorer probability, logprob signal)."""
        scored, lp = await self.signals(model, body, earlier)
        return combine_confidence(router_probability, scored, lp, self.scorer_weight), scored, lp


async def run_cascade(
    decision: Decision,
    prompt: str,
    call: Call,
    specs: Mapping[str, ModelSpec | None],
    threshold: float,
    max_attempts: int,
    confidence: Confidence | None = None,
    open_stream: OpenStreamCall | None = None,
    rule: CascadeRule | None = None,
    credentials: Callable[[str], object] | None = None,
) -> CascadeResult:
    """Run the cascade for one request; ``call(model)`` makes one (retried) provider call,
    ``open_stream(model)`` starts a streamed one (see module docstring). ``rule`` (e.g. a quality
    target's operating point) replaces ``threshold``, ``max_attempts`` and the confidence weights.

    A provider refusing our credentials (401/403) is a configuration error, not the model failing: the
    cascade does not escalate to any model behind the same credentials (``credentials(model)`` returns
    what identifies them, e.g. endpoint and key; None = every model shares them, so it stops)."""
    confidence = confidence or Confidence()
    rule = rule or CascadeRule((threshold,), max_attempts, confidence.scorer_weight)
    candidates = {c.model: c for c in decision.candidates}
    walk = CascadeWalk(rule, candidates, decision.model)
    attempts: list[Attempt] = []
    bodies: dict[int, dict[str, Any]] = {}
    answers: list[tuple[str, str]] = []  # (model, answer) so far, which the scorer compares a new one with
    while (model := walk.next()) is not None:
        prob = candidates[model].probability
        last = walk.is_last(model)
        started = await (open_stream(model) if open_stream is not None and last else call(model))
        if isinstance(started, OpenStream):
            return CascadeResult(tuple(attempts), model, None, stream=started)
        res = started
        if res.ok and res.body is not None:
            scored, lp = await confidence.signals(model, res.body, answers)
            conf = rule.confidence(prob, scored, lp)
            cost = attempt_cost(specs.get(model), prompt, res.body)
            why = walk.answered(model, conf)
            bodies[len(attempts)] = res.body
            answers.append((model, answer_text(res.body)))
            attempts.append(
                Attempt(
                    model, True, None, res.latency_ms, cost, conf, prob, res.tries, escalated_because=why,
                    scorer_probability=scored, logprob_confidence=lp,
                )
            )
        else:
            kind = res.kind
            if res.status in (401, 403):  # the same credentials fail the same way for every model behind them
                refused = credentials(model) if credentials is not None else None
                walk.tried.update(m for m in candidates if credentials is None or credentials(m) == refused)
                kind = "config_error"
            why = walk.failed(model, kind)
            attempts.append(
                Attempt(
                    model, False, res.error, res.latency_ms, 0.0, None, prob, res.tries,
                    error_kind=res.kind, escalated_because=why,
                )
            )
    # only attempts followed by another one keep the reason they were escalated from
    reasons = walk.escalation_reasons()
    attempts = [replace(a, escalated_because=why) for a, why in zip(attempts, reasons)]
    best = walk.delivered
    if best is None:
        return CascadeResult(tuple(attempts), None, None)
    return CascadeResult(tuple(attempts), attempts[best].model, bodies[best])


# ---- ensembles --------------------------------------------------------------------------------------
ENSEMBLES: tuple[str, ...] = ("best_of_n", "majority_vote", *numeric_answers.KINDS)


def ensemble_models(decision: Decision, n: int) -> list[str]:
    """The routed model and then the eligible models with the highest router probability (n in all)."""
    others = sorted(
        (c for c in decision.candidates if c.eligible and c.model != decision.model),
        key=lambda c: (-c.probability, c.expected_cost_usd),
    )
    return [decision.model, *(c.model for c in others)][: max(1, n)]


async def run_ensemble(
    decision: Decision,
    prompt: str,
    call: Call,
    specs: Mapping[str, ModelSpec | None],
    n: int,
    mode: str,
    confidence: Confidence | None = None,
) -> CascadeResult:
    """``mode`` 'best_of_n', 'majority_vote', 'mean' or 'median' over :func:`ensemble_models` (see
    module docstring)."""
    if mode not in ENSEMBLES:
        raise ValueError(f"unknown ensemble mode {mode!r}; expected one of {ENSEMBLES}")
    confidence = confidence or Confidence()
    candidates = {c.model: c for c in decision.candidates}
    models = ensemble_models(decision, n)
    results: Sequence[CallResult] = await asyncio.gather(*(call(m) for m in models))

    async def judge(model: str, res: CallResult) -> Attempt:
        prob = candidates[model].probability
        if not res.ok or res.body is None:
            return Attempt(model, False, res.error, res.latency_ms, 0.0, None, prob, res.tries, error_kind=res.kind)
        conf, scored, lp = await confidence(model, prob, res.body)
        key = normalise_answer(answer_text(res.body)) if mode != "best_of_n" else None
        return Attempt(
            model, True, None, res.latency_ms, attempt_cost(specs.get(model), prompt, res.body), conf, prob,
            res.tries, scorer_probability=scored, logprob_confidence=lp, answer_key=key,
        )

    attempts = list(await asyncio.gather(*(judge(m, r) for m, r in zip(models, results))))
    ok = [i for i, a in enumerate(attempts) if a.ok]
    if not ok:
        return CascadeResult(tuple(attempts), None, None)

    def conf(i: int) -> float:
        return attempts[i].confidence or 0.0

    numeric: dict[str, Any] | None = None
    if mode in numeric_answers.KINDS:
        values = {i: numeric_answers.parse_number(answer_text(results[i].body or {})) for i in ok}
        numbers = {i: v for i, v in values.items() if v is not None}
        numeric = {
            "kind": mode, "numbers": {models[i]: v for i, v in numbers.items()},
            "non_numeric": [models[i] for i in ok if values[i] is None],
        }
        if len(numbers) >= 2:
            value = numeric_answers.combine(list(numbers.values()), mode)
            pick = max(numbers, key=conf)
            body = results[pick].body
            assert body is not None
            text = numeric_answers.format_number(value)
            choice = {**body["choices"][0], "message": {**body["choices"][0]["message"], "content": text}}
            numeric["result"] = value
            return CascadeResult(
                tuple(attempts), models[pick], {**body, "choices": [choice, *body["choices"][1:]]}, ensemble=numeric
            )
        numeric["fallback"] = f"majority_vote: {len(numbers)} numeric answer(s), a {mode} needs at least 2"
    if mode == "best_of_n":
        pick = max(ok, key=conf)
    else:
        groups: dict[str, list[int]] = defaultdict(list)
        for i in ok:
            groups[attempts[i].answer_key or ""].append(i)
        winner = max(groups.values(), key=lambda g: (len(g), max(conf(i) for i in g)))
        pick = max(winner, key=conf)
    body = results[pick].body
    assert body is not None
    return CascadeResult(tuple(attempts), models[pick], body, ensemble=numeric)
