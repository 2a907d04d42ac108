"""A replay server: an OpenAI-compatible ``POST /v1/chat/completions`` answering from benchmark logs.

For simulations and end-to-end tests of the cascade without real providers. A request for model X
is answered with X's recorded ``response`` for the prompt, matched exactly against the logs'
``prompt`` column: first the text of the last user message, then all messages flattened with
:func:`llmroute.router.text.messages_to_prompt`. An unknown prompt gets a 404 OpenAI-style error
(``code: prompt_not_in_logs``), or, with ``unknown_prompt="most_common"``, X's most common recorded
answer. An unknown model gets a 404 (``code: model_not_found``).

``usage`` comes from the logs' ``input_tokens`` / ``output_tokens`` (counted with the cl100k
tokenizer when missing); with ``report_cost`` it also carries the logged ``cost_usd`` as ``usage.cost``
(as providers that report a cost do), so a replayed call costs exactly what the logs say. The recorded quality of the answer is returned in the non-standard field
``x_llmroute_quality`` (null for a most-common fallback): for tests and simulations only.

Fault injection, decided per request with a seeded RNG: ``latency_ms`` delays every answer;
``failure_rate`` answers HTTP 500 or 429 (alternating at random); ``timeout_rate`` holds the request
for ``timeout_s`` seconds (longer than any sensible client timeout) and then answers 504. The
per-model mappings override the global rates for the models they name.

Streaming: a request with ``stream: true`` is answered with server-sent events like OpenAI's: a role
chunk, the recorded answer in word-sized content chunks ``chunk_delay_ms`` apart, a chunk with the
``finish_reason``, a usage chunk when ``stream_options.include_usage`` is set, then ``data: [DONE]``.
``stream_break_rate`` cuts a stream after half of its content chunks (the connection is closed without
``[DONE]``), to test what a client does with an answer broken mid-stream. Faults that happen before an
answer (failures, timeouts, unknown model or prompt) are HTTP errors as without streaming.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from llmroute.data.tokens import count_tokens
from llmroute.router.text import messages_to_prompt


@dataclass(frozen=True)
class Recorded:
    response: str
    quality: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None = None


class ReplayIndex:
    """Recorded answers by (model, prompt text), and each model's most common answer."""

    def __init__(self, logs: pd.DataFrame) -> None:
        missing = {"prompt", "model", "response"} - set(logs.columns)
        if missing:
            raise ValueError(f"replay logs need the columns prompt, model, response; missing {sorted(missing)}")
        self.answers: dict[tuple[str, str], Recorded] = {}
        rows = logs.dropna(subset=["prompt", "model", "response"])
        for row in rows.itertuples(index=False):
            key = (str(row.model), str(row.prompt))
            if key not in self.answers:
                self.answers[key] = Recorded(
                    str(row.response), _num(getattr(row, "quality", None)),
                    _int(getattr(row, "input_tokens", None)), _int(getattr(row, "output_tokens", None)),
                    _num(getattr(row, "cost_usd", None)),
                )
        self.models = frozenset(str(m) for m in rows["model"].unique())
        self.most_common: dict[str, Recorded] = {}
        for model, group in rows.groupby("model", observed=True):
            top = str(group["response"].astype(str).value_counts().index[0])
            self.most_common[str(model)] = Recorded(top, None, None, None)

    def lookup(self, model: str, messages: list[dict[str, str]]) -> Recorded | None:
        users = [m for m in messages if m.get("role", "user") == "user"]
        keys = ([users[-1].get("content") or ""] if users else []) + [messages_to_prompt(messages)]
        for text in keys:
            for candidate in (text, text.strip()):
                hit = self.answers.get((model, candidate))
                if hit is not None:
                    return hit
        return None


def _num(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def _int(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = "user"
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class _ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


def _error(status: int, message: str, type_: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": code}}, status_code=status)


def create_replay_app(
    logs_df: pd.DataFrame,
    latency_ms: float = 0.0,
    failure_rate: float = 0.0,
    timeout_rate: float = 0.0,
    seed: int = 0,
    *,
    model_failure_rates: Mapping[str, float] | None = None,
    model_timeout_rates: Mapping[str, float] | None = None,
    timeout_s: float = 300.0,
    unknown_prompt: Literal["error", "most_common"] = "error",
    chunk_delay_ms: float = 0.0,
    stream_break_rate: float = 0.0,
    report_cost: bool = False,
) -> FastAPI:
    """Build a replay server over ``logs_df`` (llmroute long-format logs; see module docstring)."""
    for name, rate in [("failure_rate", failure_rate), ("timeout_rate", timeout_rate),
                       *((f"model_failure_rates[{m}]", r) for m, r in (model_failure_rates or {}).items()),
                       *((f"model_timeout_rates[{m}]", r) for m, r in (model_timeout_rates or {}).items()),
                       ("stream_break_rate", stream_break_rate)]:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate}")
    index = ReplayIndex(logs_df)
    failures = dict(model_failure_rates or {})
    timeouts = dict(model_timeout_rates or {})
    rng = random.Random(seed)
    app = FastAPI(title="llmroute replay server")
    app.state.index = index

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "replay"} for m in sorted(index.models)]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: _ChatRequest, request: Request) -> JSONResponse | StreamingResponse | dict[str, Any]:
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)
        if rng.random() < timeouts.get(body.model, timeout_rate):
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not await request.is_disconnected():
                await asyncio.sleep(0.05)
            return _error(504, "injected timeout", "server_error", "injected_timeout")
        if rng.random() < failures.get(body.model, failure_rate):
            status = rng.choice((500, 429))
            kind = "rate_limit_exceeded" if status == 429 else "injected_failure"
            return _error(status, f"injected failure ({status})", "server_error", kind)
        if body.model not in index.models:
            return _error(404, f"model {body.model!r} is not in the replay logs", "invalid_request_error",
                          "model_not_found")
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        hit = index.lookup(body.model, messages)
        if hit is None:
            if unknown_prompt == "error":
                return _error(404, f"prompt not found in the replay logs for model {body.model!r} (a replay server "
                              "answers only logged prompts; start it with --unknown-prompt most_common to answer "
                              "any prompt with the model's most common recorded answer)",
                              "invalid_request_error", "prompt_not_in_logs")
            hit = index.most_common[body.model]
        prompt_tokens = hit.input_tokens if hit.input_tokens is not None else count_tokens(messages_to_prompt(messages))
        completion_tokens = hit.output_tokens if hit.output_tokens is not None else count_tokens(hit.response)
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        if report_cost and hit.cost_usd is not None:
            usage["cost"] = hit.cost_usd
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            broken = rng.random() < stream_break_rate
            events = _stream(body.model, hit, usage if include_usage else None, chunk_delay_ms / 1000.0, broken)
            return StreamingResponse(events, media_type="text/event-stream")
        return {
            "id": f"chatcmpl-replay-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": hit.response},
                         "finish_reason": "stop"}],
            "usage": usage,
            "x_llmroute_quality": hit.quality,
        }

    return app


_PIECE = re.compile(r"\S+\s*|\s+")


async def _stream(
    model: str, hit: Recorded, usage: dict[str, int] | None, delay_s: float, broken: bool
) -> AsyncIterator[str]:
    """The recorded answer as OpenAI chat.completion.chunk events (see module docstring)."""
    base = {"id": f"chatcmpl-replay-{uuid.uuid4().hex[:16]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    pieces = _PIECE.findall(hit.response) or [hit.response]
    cut = len(pieces) // 2 if broken else None
    for i, piece in enumerate(pieces):
        if cut is not None and i >= cut:
            raise ConnectionAbortedError("replay server: injected broken stream")  # uvicorn drops the connection
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if usage is not None:
        yield event([], usage=usage)
    yield "data: [DONE]\n\n"
