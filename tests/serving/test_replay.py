"""The replay server over ASGI: recorded answers, usage, quality, unknown prompts, fault injection."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from llmroute.serving.replay import create_replay_app

LOGS = pd.DataFrame({
    "prompt": ["What is 2+2?", "What is 2+2?", "Name a colour.", "Name a colour.", "Capital of France?"],
    "model": ["small", "big", "small", "big", "small"],
    "response": ["5", "4", "red", "blue", "red"],
    "quality": [0.0, 1.0, 1.0, 1.0, 0.0],
    "input_tokens": [7, 7, 4, 4, None],
    "output_tokens": [1, 1, 1, 1, None],
})


def _chat(c: TestClient, model: str, content: str, **kw: object) -> dict[str, object]:
    r = c.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": content}], **kw})
    return {"status": r.status_code, **r.json()}


def test_answers_with_recorded_response() -> None:
    c = TestClient(create_replay_app(LOGS))
    out = _chat(c, "big", "What is 2+2?")
    assert out["status"] == 200 and out["model"] == "big"
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
    assert out["x_llmroute_quality"] == 1.0
    sys_then_user = c.post("/v1/chat/completions", json={"model": "small", "messages": [
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "Name a colour."}]}).json()
    assert sys_then_user["choices"][0]["message"]["content"] == "red"
    counted = _chat(c, "small", "Capital of France?")
    assert counted["usage"]["prompt_tokens"] > 0 and counted["usage"]["completion_tokens"] == 1  # type: ignore[index]


def test_unknown_prompt_and_model() -> None:
    c = TestClient(create_replay_app(LOGS))
    out = _chat(c, "small", "unseen")
    assert out["status"] == 404 and out["error"]["code"] == "prompt_not_in_logs"  # type: ignore[index]
    out = _chat(c, "nobody", "What is 2+2?")
    assert out["status"] == 404 and out["error"]["code"] == "model_not_found"  # type: ignore[index]
    fallback = TestClient(create_replay_app(LOGS, unknown_prompt="most_common"))
    out = _chat(fallback, "small", "unseen")
    assert out["choices"][0]["message"]["content"] == "red" and out["x_llmroute_quality"] is None  # type: ignore[index]


def test_fault_injection() -> None:
    c = TestClient(create_replay_app(LOGS, failure_rate=1.0, seed=1))
    statuses = {_chat(c, "big", "What is 2+2?")["status"] for _ in range(20)}
    assert statuses == {500, 429}
    c = TestClient(create_replay_app(LOGS, model_failure_rates={"small": 1.0}))
    assert _chat(c, "small", "What is 2+2?")["status"] in (500, 429)
    assert _chat(c, "big", "What is 2+2?")["status"] == 200
    c = TestClient(create_replay_app(LOGS, timeout_rate=1.0, timeout_s=0.1))
    assert _chat(c, "big", "What is 2+2?")["status"] == 504
    with pytest.raises(ValueError, match="failure_rate"):
        create_replay_app(LOGS, failure_rate=2.0)
    assert {m["id"] for m in TestClient(create_replay_app(LOGS)).get("/v1/models").json()["data"]} == {"small", "big"}
