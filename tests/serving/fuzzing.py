"""Schemathesis fuzzing of the service, shared by ``tests/serving/test_fuzz.py`` (short) and
``benchmarks/reliability.py fuzz`` (long): the request budget per operation, both generation modes,
and the tally (statuses, 5xx, the share of valid requests = answered 2xx)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from tests.serving.servers import LiveServer

# share of the budget per operation; the rest of the API (admin reload) is left out: it reloads the router
PLAN = {
    ("POST", "/route"): 0.45,
    ("POST", "/v1/chat/completions"): 0.25,
    ("POST", "/feedback"): 0.2,
    ("GET", "/models"): 0.025,
    ("GET", "/ready"): 0.025,
    ("GET", "/health"): 0.025,
    ("GET", "/metrics"): 0.025,
}
POSITIVE_SHARE = 0.7
# answers to requests the API refuses as malformed; any other answer (2xx, a 404 for feedback on an
# unknown decision, a 422 for constraints no model meets) went through validation: a valid request
MALFORMED = frozenset({400, 405, 413, 415, 422, 431})


def stub_provider() -> LiveServer:
    """An OpenAI-compatible stand-in that answers every chat completion with a short answer."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(body: dict[str, Any]) -> dict[str, Any]:
        return {"id": "stub", "object": "chat.completion", "model": body.get("model", "?"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1}}

    return LiveServer(app).start()


def fuzz_schema(schema: Any, cases: int, call: Callable[[Any], Any]) -> dict[str, Any]:
    """Send about ``cases`` generated requests (70% schema-valid by generation, 30% deliberately invalid)
    through ``call(case)``; returns the tally. Operations whose inputs run out (a GET without
    parameters) get fewer cases than their budget."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    statuses: Counter[str] = Counter()
    by_status: Counter[int] = Counter()
    five_xx: list[str] = []
    for (method, path), share in PLAN.items():
        op = schema[path][method]
        for mode, part in ((GenerationMode.POSITIVE, POSITIVE_SHARE), (GenerationMode.NEGATIVE, 1 - POSITIVE_SHARE)):
            n = max(1, int(cases * share * part))

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                      derandomize=False)
            def run(case: Any) -> None:
                status = call(case).status_code
                by_status[status] += 1
                statuses[f"{method} {path} {status}"] += 1  # noqa: B023 - run() runs in this iteration
                if status >= 500:
                    five_xx.append(f"{method} {path} {status}")  # noqa: B023

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - schemathesis cannot build negative cases for some operations
                statuses[f"{method} {path} {mode.value}: not generated ({type(exc).__name__})"] += 1
    total = sum(by_status.values())
    valid = sum(v for k, v in by_status.items() if k not in MALFORMED)
    return {"requests": total, "valid": valid, "valid_share": round(valid / total, 3) if total else 0.0,
            "answered_2xx": sum(v for k, v in by_status.items() if 200 <= k < 300),
            "5xx": len(five_xx), "by_status": dict(sorted(by_status.items())),
            "by_operation": dict(sorted(statuses.items())), "5xx_examples": five_xx[:10]}
