"""A deterministic OpenAI-compatible server for the benchmarking tests.

What a model answers depends on its name; every request is counted by (model, last user message).

- ``det-good``: right answers (``42``, ``B``, ``Paris``, code that passes ``add`` tests)
- ``det-bad``: wrong answers (``41``, ``C``, ``London``, code that fails)
- ``det-vary``: alternates ``42`` / ``41`` per prompt (for consistency over repeats)
- ``det-flaky``: HTTP 500 on the first request for a prompt, then ``det-good``'s answer
- ``det-slow``: sleeps 2 s, then answers
- ``det-judge``: ``SCORE: 8``
- ``det-priced``: ``det-good``'s answer with ``usage.cost`` reported by the provider
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

GOOD_CODE = "```python\ndef add(a, b):\n    return a + b\n```"
BAD_CODE = "```python\ndef add(a, b):\n    return a - b\n```"


def _answer(kind: str, prompt: str) -> str:
    p = prompt.lower()
    good = kind == "good"
    if "number" in p:
        return "The answer is 42." if good else "I think 41"
    if "choice" in p:
        return "B" if good else "(C) obviously"
    if "code" in p:
        return GOOD_CODE if good else BAD_CODE
    if "capital" in p:
        return "Paris" if good else "London"
    return "hello"


def create_fake_llm() -> FastAPI:
    app = FastAPI()
    counts: Counter[tuple[str, str]] = Counter()
    app.state.counts = counts

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> JSONResponse | dict[str, Any]:
        body = await request.json()
        model = body["model"]
        users = [m for m in body["messages"] if m.get("role") == "user"]
        prompt = users[-1]["content"]
        counts[(model, prompt)] += 1
        n = counts[(model, prompt)]
        usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if model == "det-flaky" and n == 1:
            return JSONResponse({"error": {"message": "flaky", "code": "x"}}, status_code=500)
        if model == "det-slow":
            await asyncio.sleep(2.0)
        if model == "det-judge":
            text = "SCORE: 8"
        elif model == "det-vary":
            text = "42" if n % 2 == 1 else "41"
        elif model == "det-bad":
            text = _answer("bad", prompt)
        elif model.startswith("det-"):
            text = _answer("good", prompt)
        else:
            return JSONResponse({"error": {"message": "no such model", "code": "model_not_found"}}, status_code=404)
        if model == "det-priced":
            usage["cost"] = 0.5
        return {
            "id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }

    return app
