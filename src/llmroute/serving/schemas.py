"""Pydantic models at the HTTP edge of the routing service (internal records are dataclasses)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmroute.data.catalog import Capability
from llmroute.router.decision import Constraints, Decision, QualityTarget
from llmroute.router.decision_rules import is_rule, rule_names

MAX_COST_USD = 1_000.0  # a larger cap per call is a mistake, not a budget
MAX_LATENCY_MS = 86_400_000.0  # a day
NAME_MAX = 200  # tenant, user, task, session, model names: the decision log's column width


def _bad_value(value: Any, path: str, depth: int = 0) -> str | None:
    """The first value under ``value`` that JSON from a client must not carry: a non-finite number
    (``NaN``, ``Infinity``) or a string that is not valid Unicode (a lone surrogate such as "\\ud800").
    Returns where and what, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or 'body'}: {value!r} is not a finite number"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{path or 'body'}: invalid Unicode (a lone surrogate at character {exc.start})"
        return None
    if depth > 64:
        return f"{path or 'body'}: nested too deeply"
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            bad = _bad_value(k, where, depth + 1) or _bad_value(v, where, depth + 1)
            if bad:
                return bad
    elif isinstance(value, list):
        for i, v in enumerate(value):
            bad = _bad_value(v, f"{path}[{i}]", depth + 1)
            if bad:
                return bad
    return None


class StrictInput(BaseModel):
    """A request body: no non-finite number and no invalid Unicode anywhere in it, including fields
    passed through untouched (422 naming the field; see :func:`_bad_value`)."""

    @model_validator(mode="before")
    @classmethod
    def _finite_and_valid_unicode(cls, data: Any) -> Any:
        bad = _bad_value(data, "")
        if bad:
            raise ValueError(bad)
        return data


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("must be a number, not true/false")
    return v


Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")]  # no control characters
TARGET_PATTERN = r"^(100|[1-9]?[0-9])(\.[0-9]{1,3})?%$"  # what the schema advertises; parse_target decides


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str | None = None


class ChatMessage(BaseModel):
    """An OpenAI-style chat message; ``content`` may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


def parse_target(value: str | float | None) -> QualityTarget | None:
    """'95%' -> 95% of the best model (relative); 0.85 or '0.85' -> absolute quality 0.85."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return QualityTarget(float(value), "absolute")
    try:
        return QualityTarget.parse(str(value))
    except ValueError as exc:
        raise ValueError(
            f"target must be a share of the best model like '95%' or an absolute quality like 0.85 ({exc})"
        ) from None


class RoutingOptions(StrictInput):
    """What a request may ask of the router (shared by /route and the `llmroute` field of chat requests).

    Numbers must be finite numbers (not true/false); ``rule`` a registered decision rule; names (tenant,
    user, task, session, models) 1 to 200 characters without control characters (NUL included); ``max_cost_usd`` at most 1000 USD and ``max_latency_ms`` at most a day."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    target: str | float | None = Field(
        default=None, description="'95%' (of the best model) or 0.85 (absolute).",
        json_schema_extra={"anyOf": [{"type": "string", "pattern": TARGET_PATTERN},
                                     {"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]},
    )
    confidence: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Threshold rule with this P(meets target) bar (overrides target)."
    )
    rule: str | None = Field(
        default=None,
        description="A registered decision rule: 'threshold' or 'utility' (built in; default: the router's own).",
    )
    max_cost_usd: Annotated[float, Field(ge=0, le=MAX_COST_USD)] | None = None
    max_latency_ms: Annotated[float, Field(gt=0, le=MAX_LATENCY_MS)] | None = None
    max_output_tokens: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    allowed_models: Annotated[list[Name], Field(max_length=1000)] | None = None
    excluded_models: Annotated[list[Name], Field(max_length=1000)] = Field(default_factory=list)
    required_capabilities: list[Capability] = Field(default_factory=list)
    task: Name | None = None
    user: Name | None = None
    tenant: Name | None = None
    session: Name | None = Field(default=None, description="Session id: the unit of A/B experiments with 'unit: session'.")
    data_policy: Literal["any", "prefer_local", "local_only"] | None = Field(
        default=None,
        description="Where the prompt may go: 'local_only' (only local models; refused rather than sent to an "
        "API), 'prefer_local' (a local model when it clears the target, else API) or 'any'. Combined with "
        "the tenant's policy, the stricter applies. None = the tenant's (or the service's) policy.",
    )

    @field_validator("target", "confidence", "max_cost_usd", "max_latency_ms", "max_output_tokens", mode="before")
    @classmethod
    def _numbers_not_bools(cls, v: Any) -> Any:
        return _not_bool(v)

    @field_validator("rule")
    @classmethod
    def _check_rule(cls, v: str | None) -> str | None:
        if v is not None and not is_rule(v):
            raise ValueError(f"unknown rule {v!r}; expected one of {', '.join(map(repr, rule_names()))}")
        return v

    @field_validator("target")
    @classmethod
    def _check_target(cls, v: str | float | None) -> str | float | None:
        parse_target(v)
        return v

    def quality_target(self) -> QualityTarget | None:
        return parse_target(self.target)

    def constraints(self) -> Constraints:
        return Constraints(
            max_cost_usd=self.max_cost_usd,
            max_latency_ms=self.max_latency_ms,
            allowed_models=tuple(self.allowed_models) if self.allowed_models is not None else None,
            excluded_models=tuple(self.excluded_models),
            required_capabilities=tuple(self.required_capabilities),
            max_output_tokens=self.max_output_tokens,
            data_policy=self.data_policy or "any",
        )


class RouteRequest(RoutingOptions):
    """Body of ``POST /route``: exactly one of ``prompt`` and ``messages``."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}]})

    prompt: Annotated[str, Field(min_length=1)] | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> RouteRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' (a string) or 'messages' (OpenAI-style chat messages)")
        return self


class CandidateOut(BaseModel):
    model: str
    probability: float = Field(description="P(the call meets the quality target), calibrated.")
    expected_cost_usd: float = Field(description="Mean USD cost of the call (never below catalog price arithmetic).")
    eligible: bool
    excluded_by: str | None = Field(description="The first constraint that excludes the model (null: eligible).")
    cost_cap_usd: float | None = Field(
        default=None, description="The conservative USD cost max_cost_usd was checked against."
    )
    assumed: list[str] = Field(
        default_factory=list, description="Catalog figures that were unknown and what was assumed instead."
    )


class RouteResponse(BaseModel):
    decision_id: str
    model: str
    candidates: list[CandidateOut]
    reason: str
    cleared: bool
    rule: str
    knob: float
    target: str | None
    task_hint: str | None
    router_version: str
    explored: bool = Field(
        default=False, description="True when exploration served another eligible model than the router's choice."
    )
    experiment: str | None = Field(default=None, description="The A/B experiment that served the request, if any.")
    arm: str | None = Field(
        default=None, description="The experiment arm that served the request (null when no experiment runs)."
    )

    @classmethod
    def from_decision(
        cls, decision_id: str, d: Decision, experiment: str | None = None, arm: str | None = None
    ) -> RouteResponse:
        return cls(
            decision_id=decision_id,
            model=d.model,
            candidates=[CandidateOut(**c.__dict__) for c in d.candidates],
            reason=d.reason,
            cleared=d.cleared,
            rule=d.rule,
            knob=d.knob,
            target=None if d.target is None else str(d.target),
            task_hint=d.task_hint,
            router_version=d.router_version,
            explored=bool(d.extra.get("explored", False)),
            experiment=experiment,
            arm=arm,
        )


def route_response_dict(decision_id: str, d: Decision, experiment: str | None = None, arm: str | None = None
                        ) -> dict[str, Any]:
    """``RouteResponse.from_decision(...).model_dump()`` without building the models: the same dict (keys,
    their order, values and types), for the chat answer's ``llmroute.decision`` on every proxied request
    (pydantic validation of the model and its candidates cost 3-4x more)."""
    return {
        "decision_id": decision_id,
        "model": d.model,
        "candidates": [
            {"model": c.model, "probability": float(c.probability), "expected_cost_usd": float(c.expected_cost_usd),
             "eligible": bool(c.eligible), "excluded_by": c.excluded_by,
             "cost_cap_usd": None if c.cost_cap_usd is None else float(c.cost_cap_usd), "assumed": list(c.assumed)}
            for c in d.candidates
        ],
        "reason": d.reason,
        "cleared": bool(d.cleared),
        "rule": d.rule,
        "knob": float(d.knob),
        "target": None if d.target is None else str(d.target),
        "task_hint": d.task_hint,
        "router_version": d.router_version,
        "explored": bool(d.extra.get("explored", False)),
        "experiment": experiment,
        "arm": arm,
    }

class EnsembleOptions(BaseModel):
    """``{"kind": ..., "n": N}``: call N models at once and combine their answers
    (:mod:`llmroute.serving.cascade`; ``mean`` / ``median`` for numeric answers)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["best_of_n", "majority_vote", "mean", "median"]
    n: Annotated[int, Field(ge=1, le=16)] = 3


class ChatOptions(RoutingOptions):
    """The ``llmroute`` object of a chat request: routing options plus at most one ensemble."""

    best_of_n: Annotated[int, Field(ge=1, le=16)] | None = Field(
        default=None, description="Call the N most promising eligible models at once; answer with the most confident."
    )
    majority_vote: Annotated[int, Field(ge=1, le=16)] | None = Field(
        default=None, description="Call N models at once; answer with the most common normalised answer."
    )

    ensemble_: EnsembleOptions | None = Field(
        default=None, alias="ensemble",
        description="{'kind': 'best_of_n' | 'majority_vote' | 'mean' | 'median', 'n': N}; 'mean' and 'median' "
        "combine numeric answers (non-numeric ones are left out and counted; fewer than two numbers: majority vote).",
    )

    @model_validator(mode="after")
    def _one_ensemble(self) -> ChatOptions:
        given = [k for k, v in (("best_of_n", self.best_of_n), ("majority_vote", self.majority_vote),
                                ("ensemble", self.ensemble_)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of 'best_of_n', 'majority_vote' and 'ensemble' (got {', '.join(given)})")
        return self

    def ensemble(self) -> tuple[str, int] | None:
        """('best_of_n' | 'majority_vote' | 'mean' | 'median', N), or None for the cascade."""
        if self.best_of_n is not None:
            return "best_of_n", self.best_of_n
        if self.majority_vote is not None:
            return "majority_vote", self.majority_vote
        if self.ensemble_ is not None:
            return self.ensemble_.kind, self.ensemble_.n
        return None


class ChatCompletionRequest(StrictInput):
    """OpenAI chat completion request. ``model`` is 'llmroute' or 'llmroute:<target>' (e.g.
    'llmroute:95%') to route, or the name (or alias) of one of the served router's models to pin the
    request to that model (no routing; checked against the router by the chat route).

    Other OpenAI fields (temperature, max_tokens, logprobs, ...) are passed through to the chosen model.
    Routing options go in the non-standard ``llmroute`` object.
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(
        min_length=1,
        description="'llmroute', 'llmroute:<target>', or a served model's name to pin the request (GET /v1/models).",
        json_schema_extra={"pattern": r"^llmroute(:(100|[1-9]?[0-9])(\.[0-9]{1,3})?%)?$"},
    )
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    llmroute: ChatOptions | None = None

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        name, _, target = v.partition(":")
        if name == "llmroute" and target:
            parse_target(target)
        return v

    def pinned_model(self) -> str | None:
        """The model the request names directly, or None when it asks to be routed."""
        return None if self.model.partition(":")[0] == "llmroute" else self.model

    def routing(self) -> ChatOptions:
        opts = self.llmroute or ChatOptions()
        name, _, target = self.model.partition(":")
        if name == "llmroute" and target and opts.target is None:
            opts = opts.model_copy(update={"target": target})
        if not opts.max_output_tokens and self.max_output_tokens():
            opts = opts.model_copy(update={"max_output_tokens": self.max_output_tokens()})
        if opts.user is None and isinstance(self.model_extra, dict) and isinstance(self.model_extra.get("user"), str):
            opts = opts.model_copy(update={"user": self.model_extra["user"]})
        return opts

    def provider_payload(self) -> dict[str, Any]:
        """The body sent to the chosen model (``model`` is set per attempt; streaming is done by us)."""
        body = self.model_dump(exclude={"model", "stream", "llmroute"}, exclude_none=True)
        return body

    def max_output_tokens(self) -> int:
        """The answer-length bound the request gives the model (``max_completion_tokens`` or
        ``max_tokens``), 0 when none: it counts against the context window and bounds the cost cap."""
        extra = self.model_extra or {}
        for key in ("max_completion_tokens", "max_tokens"):
            v = extra.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return 0


class FeedbackRequest(StrictInput):
    """Body of ``POST /feedback``: a quality score in [0, 1] for the answer of a logged decision."""

    model_config = ConfigDict(extra="forbid")

    decision_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="The decision_id returned by /route or /v1/chat/completions."
    )
    quality: float = Field(description="How good the answer was: 0 (useless) to 1 (perfect).")
    comment: Annotated[str, Field(max_length=10_000)] | None = None
    cost_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None,
        description="What the call the decision chose actually cost (USD), booked once per decision against the "
        "budgets of its tenant, user and key (for /route users; chat requests are booked by the service).",
    )

    @field_validator("quality", mode="before")
    @classmethod
    def _quality_not_bool(cls, v: Any) -> Any:
        return _not_bool(v)

    @field_validator("quality")
    @classmethod
    def _check_quality(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:  # also rejects NaN
            raise ValueError(f"quality must be a number from 0 to 1, got {v}")
        return v


class FeedbackResponse(BaseModel):
    decision_id: str
    feedback_id: str
    cost_charged: bool | None = Field(
        default=None, description="With cost_usd: true when booked now, false when this decision's cost was "
        "booked before (never counted twice).",
    )
