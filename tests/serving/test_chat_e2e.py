"""End to end over real HTTP on 127.0.0.1: router service -> replay server, with injected faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.replay import create_replay_app
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained
from tests.serving.servers import LiveServer

Start = Callable[..., tuple[httpx.Client, str]]


def _recorded(logs: pd.DataFrame, prompt: str, model: str) -> pd.Series:
    return logs[(logs["prompt"] == prompt) & (logs["model"] == model)].iloc[0]


@pytest.fixture
def prompt(trained: Trained) -> str:
    """A logged prompt that every model answered."""
    counts = trained.logs.groupby("prompt")["model"].nunique()
    return str(counts[counts == len(trained.router.models)].index[3])


@pytest.fixture
def start(trained: Trained, router: Router, live: list[LiveServer]) -> Start:
    """Start a replay server (with fault options) and the router service pointed at it."""

    def _start(
        serve: dict[str, Any] | None = None, logs: pd.DataFrame | None = None, **replay: Any
    ) -> tuple[httpx.Client, str]:
        rep = LiveServer(create_replay_app(trained.logs if logs is None else logs, **replay)).start()
        live.append(rep)
        options: dict[str, Any] = {
            "model": str(trained.folder), "default_base_url": f"{rep.url}/v1", "provider_timeout_s": 1.0,
            "provider_retries": 1, "retry_backoff_s": 0.01, "cascade_confidence": 0.0, **(serve or {}),
        }
        settings = ServeSettings(**options)
        svc = LiveServer(create_app(settings, router, core=trained.core)).start()
        live.append(svc)
        return httpx.Client(base_url=svc.url, timeout=30), rep.url

    return _start


def _chat(client: httpx.Client, prompt: str, **extra: Any) -> httpx.Response:
    body = {"model": "llmroute", "messages": [{"role": "user", "content": prompt}], **extra}
    return client.post("/v1/chat/completions", json=body)


def _routed(client: httpx.Client, prompt: str) -> str:
    return str(client.post("/route", json={"prompt": prompt}).json()["model"])


def _price(router: Router, model: str, tin: int, tout: int) -> float:
    spec = router.specs[model]
    assert spec is not None and spec.input_price_per_1m is not None and spec.output_price_per_1m is not None
    return (tin * spec.input_price_per_1m + tout * spec.output_price_per_1m) / 1e6


def test_chat_returns_recorded_answer(start: Start, prompt: str, trained: Trained, router: Router) -> None:
    client, _ = start()
    with client:
        model = _routed(client, prompt)
        r = _chat(client, prompt, temperature=0)
    assert r.status_code == 200, r.text
    body = r.json()
    rec = _recorded(trained.logs, prompt, model)
    assert body["model"] == model
    assert body["choices"][0]["message"]["content"] == rec["response"]
    assert body["x_llmroute_quality"] == rec["quality"]
    assert r.headers["X-LLMRoute-Model"] == model
    assert r.headers["X-LLMRoute-Attempts"] == "1"
    info = body["llmroute"]
    assert r.headers["X-LLMRoute-Decision-Id"] == info["decision_id"] == info["decision"]["decision_id"]
    assert info["decision"]["model"] == model and info["decision"]["router_version"] == router.version
    [attempt] = info["attempts"]
    assert attempt["ok"] and attempt["model"] == model and attempt["error"] is None
    expected = _price(router, model, int(rec["input_tokens"]), int(rec["output_tokens"]))
    assert attempt["cost_usd"] == pytest.approx(expected)
    assert info["total_cost_usd"] == pytest.approx(expected)


def test_target_in_model_name(start: Start, prompt: str) -> None:
    client, _ = start()
    with client:
        r = _chat(client, prompt, model="llmroute:0.9")
        assert r.status_code == 200, r.text
        assert r.json()["llmroute"]["decision"]["target"] == "quality 0.900"
        bad = _chat(client, prompt, model="gpt-4")  # a catalog model this router does not serve
        assert bad.status_code == 404, bad.text
        err = bad.json()["error"]
        assert err["code"] == "model_not_found" and "'llmroute'" in err["message"] and "/v1/models" in err["message"]


def test_failing_model_escalates_and_costs_all_attempts(
    start: Start, prompt: str, trained: Trained, router: Router
) -> None:
    probe, _ = start()
    with probe:
        first = _routed(probe, prompt)
    client, _ = start(model_failure_rates={first: 1.0})
    with client:
        r = _chat(client, prompt)
    assert r.status_code == 200, r.text
    body = r.json()
    attempts = body["llmroute"]["attempts"]
    assert attempts[0]["model"] == first and not attempts[0]["ok"]
    assert attempts[0]["error_kind"] in ("http_500", "http_429") and attempts[0]["tries"] == 2
    assert attempts[0]["escalated_because"] == attempts[0]["error_kind"]
    final = attempts[-1]
    assert final["ok"] and final["model"] != first
    assert body["model"] == final["model"] == r.headers["X-LLMRoute-Model"]
    assert r.headers["X-LLMRoute-Attempts"] == str(len(attempts))
    rec = _recorded(trained.logs, prompt, final["model"])
    assert body["choices"][0]["message"]["content"] == rec["response"]
    assert body["llmroute"]["total_cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in attempts))
    assert body["llmroute"]["total_cost_usd"] == pytest.approx(
        _price(router, final["model"], int(rec["input_tokens"]), int(rec["output_tokens"]))
    )


def test_timeout_escalates(start: Start, prompt: str) -> None:
    probe, _ = start()
    with probe:
        first = _routed(probe, prompt)
    client, _ = start(serve={"provider_timeout_s": 0.5}, model_timeout_rates={first: 1.0}, timeout_s=30)
    with client:
        r = _chat(client, prompt)
    assert r.status_code == 200, r.text
    attempts = r.json()["llmroute"]["attempts"]
    assert attempts[0]["model"] == first and attempts[0]["error_kind"] == "timeout"
    assert attempts[0]["tries"] == 1 and 400 <= attempts[0]["latency_ms"] < 5000
    assert attempts[-1]["ok"] and r.json()["model"] != first


def test_low_confidence_escalates_to_more_probable_models(start: Start, prompt: str, router: Router) -> None:
    client, _ = start(serve={"cascade_confidence": 1.0, "cascade_max_attempts": 3})
    with client:
        r = _chat(client, prompt)
    assert r.status_code == 200, r.text
    info = r.json()["llmroute"]
    attempts = info["attempts"]
    cands = {c["model"]: c for c in info["decision"]["candidates"]}
    assert all(a["ok"] for a in attempts) and 1 <= len(attempts) <= 3
    for a, b in zip(attempts, attempts[1:]):
        assert (a["escalated_because"] or "").startswith("confidence"), attempts
        assert cands[b["model"]]["expected_cost_usd"] > cands[a["model"]]["expected_cost_usd"]
        assert cands[b["model"]]["probability"] > cands[a["model"]]["probability"]
    assert r.json()["model"] == max(attempts, key=lambda a: a["confidence"])["model"]
    assert info["total_cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in attempts))
    assert all(a["cost_usd"] > 0 for a in attempts)


def test_every_model_failing_is_502_with_attempts(start: Start, prompt: str) -> None:
    client, _ = start(serve={"cascade_max_attempts": 3}, failure_rate=1.0)
    with client:
        r = _chat(client, prompt)
        metrics = client.get("/metrics").text
    assert r.status_code == 502
    body = r.json()
    assert body["error"]["type"] == "all_models_failed"
    assert len(body["llmroute"]["attempts"]) == 3 and body["llmroute"]["total_cost_usd"] == 0
    assert r.headers["X-LLMRoute-Attempts"] == "3"
    assert 'llmroute_escalations_total{reason="failure"} 2.0' in metrics
    assert "llmroute_provider_errors_total{" in metrics


def test_unknown_prompt_escalates_then_fails_cleanly(start: Start) -> None:
    client, _ = start(serve={"cascade_max_attempts": 2})
    with client:
        r = _chat(client, "a prompt that is not in the logs")
    assert r.status_code == 502
    assert all(a["error_kind"] == "http_404" for a in r.json()["llmroute"]["attempts"])
    error = r.json()["llmroute"]["attempts"][0]["error"]
    assert error == "HTTP 404: the model or endpoint was not found at the provider"  # the provider's text is not relayed


def test_streaming_sends_final_answer_as_sse(start: Start, prompt: str, trained: Trained) -> None:
    client, _ = start()
    with client, client.stream(
        "POST", "/v1/chat/completions",
        json={"model": "llmroute", "stream": True, "messages": [{"role": "user", "content": prompt}]},
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    model = chunks[0]["model"]
    assert text == _recorded(trained.logs, prompt, model)["response"]
    assert chunks[-1]["llmroute"]["attempts"][-1]["model"] == model


def _logged(url: str) -> pd.DataFrame:
    from llmroute.data.decision_log import DecisionLogStore

    with DecisionLogStore(url) as store:
        return pd.concat([b.to_pandas() for b in store.joined()], ignore_index=True)


def test_chat_logs_decision_and_outcome_with_all_attempts(
    start: Start, prompt: str, live: list[LiveServer], tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    client, _ = start(serve={"cascade_confidence": 1.0, "cascade_max_attempts": 3, "decision_log_url": url})
    with client:
        r = _chat(client, prompt, user="u9")
    assert r.status_code == 200, r.text
    info = r.json()["llmroute"]
    live[-1].stop()  # the service: its shutdown flushes the log
    [row] = _logged(url).to_dict("records")
    assert row["decision_id"] == info["decision_id"] == r.headers["X-LLMRoute-Decision-Id"]
    assert row["source"] == "chat" and row["user"] == "u9" and row["prompt"] == prompt
    assert row["chosen_model"] == info["decision"]["model"] and row["propensity"] == 1.0
    assert row["outcome_model"] == r.json()["model"] and row["ok"]
    attempts = json.loads(row["attempts"])
    assert len(attempts) >= 2, attempts  # confidence 1.0 escalates while a more probable model is left
    assert [a["model"] for a in attempts] == [a["model"] for a in info["attempts"]]
    assert row["cost_usd"] == pytest.approx(info["total_cost_usd"])
    assert row["cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in attempts))
    usage = r.json()["usage"]
    assert row["input_tokens"] == usage["prompt_tokens"] and row["output_tokens"] == usage["completion_tokens"]
    final = next(a for a in attempts if a["model"] == row["outcome_model"])
    assert row["latency_ms"] == pytest.approx(final["latency_ms"])


def test_chat_logs_failed_outcome(start: Start, prompt: str, live: list[LiveServer], tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    client, _ = start(serve={"cascade_max_attempts": 2, "decision_log_url": url, "redact_prompts": True},
                      failure_rate=1.0)
    with client:
        r = _chat(client, prompt)
    assert r.status_code == 502
    live[-1].stop()
    [row] = _logged(url).to_dict("records")
    assert row["decision_id"] == r.headers["X-LLMRoute-Decision-Id"] and row["source"] == "chat"
    assert pd.isna(row["prompt"]) and row["embedding"] is not None
    assert not row["ok"] and row["error"] and row["cost_usd"] == 0
    attempts = json.loads(row["attempts"])
    assert len(attempts) == 2 and row["outcome_model"] == attempts[-1]["model"]


def test_chat_cascade_starts_from_the_explored_model(start: Start, prompt: str) -> None:
    client, _ = start({"exploration_share": 0.5, "exploration_seed": 11})
    with client:
        infos = []
        for _ in range(16):
            r = _chat(client, prompt, temperature=0)
            assert r.status_code == 200, r.text
            infos.append(r.json()["llmroute"])
    explored = [i for i in infos if i["decision"]["explored"]]
    assert explored and len(explored) < len(infos)
    routers_pick = {i["decision"]["model"] for i in infos if not i["decision"]["explored"]}
    assert len(routers_pick) == 1
    for info in explored:
        served = info["decision"]["model"]
        assert served not in routers_pick and info["decision"]["reason"].startswith("exploration:")
        assert info["attempts"][0]["model"] == served
        assert any(c["model"] == served and c["eligible"] for c in info["decision"]["candidates"])


def _stream_chat(
    client: httpx.Client, prompt: str, only: str | None = None
) -> tuple[httpx.Response, list[tuple[float, str]]]:
    """POST a streamed chat request (routed among ``only`` when given); the response and its
    ``data:`` payloads with their arrival times."""
    import time

    body: dict[str, Any] = {"model": "llmroute", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    if only is not None:
        body["llmroute"] = {"allowed_models": [only]}
    t0 = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        events = [(time.perf_counter() - t0, line.removeprefix("data: ")) for line in r.iter_lines() if line.startswith("data: ")]
    return r, events


@pytest.fixture(scope="session")
def wordy_logs(trained: Trained) -> pd.DataFrame:
    """The session's logs and one more prompt (an MBPP one: multiple-choice answers are one word)
    answered by some model with 12 to 80 words; ``attrs['wordy']`` is that (prompt, model)."""
    from llmroute.data.importers import read_logs
    from tests.serving.conftest import REPO

    df = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    words = df["response"].astype(str).str.split().str.len()
    row = df[words.between(12, 80)].iloc[0]
    logs = pd.concat([trained.logs, df[df["prompt_id"] == row["prompt_id"]]], ignore_index=True)
    logs.attrs["wordy"] = (str(row["prompt"]), str(row["model"]))
    return logs


@pytest.fixture
def wordy(wordy_logs: pd.DataFrame) -> tuple[str, str]:
    return tuple(wordy_logs.attrs["wordy"])  # type: ignore[return-value]


def test_stream_is_passed_through_as_it_arrives(
    start: Start, wordy: tuple[str, str], wordy_logs: pd.DataFrame
) -> None:
    delay_ms = 40
    client, _ = start(logs=wordy_logs, chunk_delay_ms=delay_ms)
    with client:
        r, events = _stream_chat(client, *wordy)
    assert r.status_code == 200 and events[-1][1] == "[DONE]"
    chunks = [(t, json.loads(e)) for t, e in events[:-1]]
    content = [(t, c) for t, c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    model = chunks[0][1]["model"]
    assert model == wordy[1]
    rec = _recorded(wordy_logs, wordy[0], model)
    assert "".join(c["choices"][0]["delta"]["content"] for _, c in content) == rec["response"]
    assert len(content) >= 12  # word by word, not one buffered chunk
    # the first words reached the client while the provider was still sending the rest
    assert content[-1][0] - content[0][0] >= (len(content) - 2) * delay_ms / 1000 * 0.8
    closing = chunks[-1][1]
    assert closing["choices"] == [] and closing["usage"]["completion_tokens"] == int(rec["output_tokens"])
    info = closing["llmroute"]
    assert info["attempts"][-1]["model"] == model and info["attempts"][-1]["ok"]
    assert info["attempts"][-1]["cost_usd"] > 0 and info["total_cost_usd"] == pytest.approx(info["attempts"][-1]["cost_usd"])
    assert r.headers["X-LLMRoute-Model"] == model and r.headers["X-LLMRoute-Attempts"] == "1"


def test_stream_escalates_like_a_whole_answer_and_streams_the_last_model(start: Start, prompt: str) -> None:
    client, _ = start(serve={"cascade_confidence": 1.0, "cascade_max_attempts": 3})
    with client:
        whole = _chat(client, prompt).json()["llmroute"]["attempts"]
        r, events = _stream_chat(client, prompt)
    info = json.loads(events[-2][1])["llmroute"]
    assert [a["model"] for a in info["attempts"]] == [a["model"] for a in whole]
    assert all(a["escalated_because"] for a in info["attempts"][:-1])
    assert r.headers["X-LLMRoute-Attempts"] == str(len(whole))
    assert info["total_cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in info["attempts"]))
    assert all(a["cost_usd"] > 0 for a in info["attempts"]) and info["attempts"][-1]["confidence"] is not None


def test_stream_that_fails_to_start_escalates(start: Start, prompt: str) -> None:
    probe, _ = start()
    with probe:
        first = _routed(probe, prompt)
    client, _ = start(model_failure_rates={first: 1.0})
    with client:
        r, events = _stream_chat(client, prompt)
    assert r.status_code == 200 and events[-1][1] == "[DONE]"
    attempts = json.loads(events[-2][1])["llmroute"]["attempts"]
    assert attempts[0]["model"] == first and not attempts[0]["ok"] and attempts[0]["tries"] == 2
    assert attempts[-1]["ok"] and attempts[-1]["model"] != first == attempts[0]["model"]
    assert json.loads(events[0][1])["model"] == attempts[-1]["model"] == r.headers["X-LLMRoute-Model"]


def test_stream_broken_midway_ends_with_an_error_event_and_is_logged(
    start: Start, wordy: tuple[str, str], wordy_logs: pd.DataFrame, live: list[LiveServer], tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    client, _ = start(serve={"decision_log_url": url}, logs=wordy_logs, stream_break_rate=1.0)
    with client:
        r, events = _stream_chat(client, *wordy)
    assert r.status_code == 200 and events[-1][1] == "[DONE]"
    payloads = [json.loads(e) for _, e in events[:-1]]
    sent = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads if p.get("choices"))
    error = payloads[-1]
    assert error["error"]["type"] == "stream_broken" and sent  # half the answer went out, then the error
    attempt = error["llmroute"]["attempts"][-1]
    assert not attempt["ok"] and attempt["error_kind"] == "broken" and attempt["cost_usd"] > 0
    live[-1].stop()  # flushes the decision log
    [row] = _logged(url).to_dict("records")
    assert not row["ok"] and "stream" in row["error"] and row["cost_usd"] == pytest.approx(attempt["cost_usd"])


def test_client_leaving_mid_stream_closes_the_provider_call_and_logs_it(
    start: Start, wordy: tuple[str, str], wordy_logs: pd.DataFrame, live: list[LiveServer], tmp_path: Any
) -> None:
    import time

    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    client, _ = start(serve={"decision_log_url": url}, logs=wordy_logs, chunk_delay_ms=200)
    body = {"model": "llmroute", "stream": True, "messages": [{"role": "user", "content": wordy[0]}],
            "llmroute": {"allowed_models": [wordy[1]]}}
    with client, client.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # the first word: hang up
    time.sleep(1.0)
    live[-1].stop()
    [row] = _logged(url).to_dict("records")
    attempts = json.loads(row["attempts"])
    assert not row["ok"] and attempts[-1]["error_kind"] == "client_disconnected"
