"""Relay the final model's streamed answer to the client as it arrives (server-sent events).

:func:`relay` forwards every content event of the provider's stream (with ``model`` set to the model
that answers), keeps the text, logprobs and usage it saw, and ends the client's stream with one more
event: no content, the provider's ``usage`` and the ``llmroute`` field (decision, every attempt
including this one with its cost and confidence, total cost), then ``data: [DONE]``. When the stream
breaks after it started, the client gets an ``error`` event (with the same ``llmroute`` field) instead
of that last event: what was already sent cannot be taken back, so a broken stream is not escalated.

When the relay ends -- normally, broken, or because the client went away -- ``on_done`` gets the
:class:`~llmroute.serving.cascade.CascadeResult` with the streamed attempt appended (its cost is that
of the tokens received: providers bill a cut answer too), for metrics and the decision log. The
provider's response is always closed, also when the client disconnects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import anyio

from llmroute.data.catalog import ModelSpec
from llmroute.providers.chat import OpenStream, StreamBroken
from llmroute.serving.cascade import Attempt, CascadeResult, Confidence, attempt_cost
from llmroute.serving.errors import error_body


@dataclass
class _Received:
    """What the client was sent of the streamed answer."""

    parts: list[str] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    first: Mapping[str, Any] | None = None  # the first event (id, created) for the closing event

    def take(self, event: Mapping[str, Any]) -> bool:
        """Record ``event``; True when it carries choices (to forward), False for a usage-only event."""
        if self.first is None:
            self.first = event
        if isinstance(event.get("usage"), dict):
            self.usage = dict(event["usage"])
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices:
            return False
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = {}
            if isinstance(delta.get("content"), str):
                self.parts.append(delta["content"])
            lp = choice.get("logprobs")
            if isinstance(lp, dict) and isinstance(lp.get("content"), list):
                self.logprobs.extend(lp["content"])
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return True

    def body(self, model: str) -> dict[str, Any]:
        """The answer as a whole chat completion (for cost, confidence and the log)."""
        message = {"role": "assistant", "content": "".join(self.parts)}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": self.finish_reason or "stop"}
        if self.logprobs:
            choice["logprobs"] = {"content": self.logprobs}
        body: dict[str, Any] = {"object": "chat.completion", "model": model, "choices": [choice]}
        if self.usage is not None:
            body["usage"] = self.usage
        if self.first is not None:
            body.update({k: self.first[k] for k in ("id", "created") if k in self.first})
        return body


def _sse(obj: Mapping[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"


async def relay(
    started: CascadeResult,
    *,
    prompt: str,
    spec: ModelSpec | None,
    router_probability: float,
    confidence: Confidence,
    info: dict[str, Any],
    on_done: Callable[[CascadeResult], None],
) -> AsyncIterator[str]:
    """Server-sent events of ``started.stream`` (see module docstring). ``info`` is the ``llmroute``
    field so far (decision, earlier attempts); its attempts and total cost are completed here."""
    opened = started.stream
    assert opened is not None, "relay needs a cascade result with an open stream"
    model = opened.model
    got = _Received()
    attempt: Attempt | None = None
    try:
        try:
            async for event in opened.events():
                if got.take(event):
                    yield _sse({**event, "model": model})
        except StreamBroken as exc:
            attempt = _attempt(opened, got, prompt, spec, router_probability, error=(str(exc), exc.kind))
            yield _sse({**error_body("stream_broken", f"{model}: {exc}"), "llmroute": _info(info, started, attempt)})
        else:
            body = got.body(model)
            conf, scored, lp = await confidence(model, router_probability, body)
            attempt = replace(
                _attempt(opened, got, prompt, spec, router_probability),
                confidence=conf, scorer_probability=scored, logprob_confidence=lp,
            )
            closing = {
                "id": (got.first or {}).get("id", info["decision_id"]),
                "object": "chat.completion.chunk",
                "created": (got.first or {}).get("created"),
                "model": model,
                "choices": [],
                "usage": got.usage,
                "llmroute": _info(info, started, attempt),
            }
            yield _sse(closing)
        yield "data: [DONE]\n\n"
    finally:
        if attempt is None:  # the client went away (or the relay was cancelled) mid-stream
            attempt = _attempt(opened, got, prompt, spec, router_probability, error=("client disconnected", "client_disconnected"))
        with anyio.CancelScope(shield=True):
            await opened.aclose()
        on_done(_result(started, attempt, got))


def _attempt(
    opened: OpenStream,
    got: _Received,
    prompt: str,
    spec: ModelSpec | None,
    router_probability: float,
    error: tuple[str, str] | None = None,
) -> Attempt:
    cost = attempt_cost(spec, prompt, got.body(opened.model)) if got.parts or got.usage else 0.0
    return Attempt(
        opened.model, error is None, error[0] if error else None, opened.elapsed_ms(), cost, None,
        router_probability, opened.tries, error_kind=error[1] if error else None,
    )


def _result(started: CascadeResult, attempt: Attempt, got: _Received) -> CascadeResult:
    attempts = (*started.attempts, attempt)
    if attempt.ok:
        return CascadeResult(attempts, attempt.model, got.body(attempt.model))
    return CascadeResult(attempts, None, None)


def _info(info: dict[str, Any], started: CascadeResult, attempt: Attempt) -> dict[str, Any]:
    attempts = [*info["attempts"], attempt.to_dict()]
    return {**info, "attempts": attempts, "total_cost_usd": started.total_cost_usd + attempt.cost_usd}
