"""A client that hangs up mid-cascade is still charged for the provider calls already paid, and the cascade
stops there (a real uvicorn server: the disconnect is a real closed socket, not a TestClient shortcut)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.ledger import BudgetLedger
from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained
from tests.serving.servers import LiveServer

KEY = "client-key-1"
FIRST_COST = 0.01  # the first attempt answers at once (and is escalated); the second never answers in time


def test_a_client_hanging_up_mid_cascade_is_charged_for_the_attempts_already_paid(
    router: Router, trained: Trained, tmp_path: Path
) -> None:
    calls: list[str] = []
    cancelled = threading.Event()

    async def provider(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body["model"])
        if len(calls) > 1:
            try:
                await asyncio.sleep(30)  # the second attempt: the client hangs up while it runs
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "cost": FIRST_COST},
        })

    budgets = tmp_path / "b.yaml"
    budgets.write_text(yaml.safe_dump({"budgets": [
        {"name": "acme", "tenant": "acme", "amount_usd": 10, "window": "daily", "enforcement": "block"}]}))
    log_url = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    settings = ServeSettings(
        model="/nonexistent", api_keys=[KEY], decision_log_url=log_url, default_base_url="http://provider.test/v1",
        cascade_max_attempts=3, cascade_confidence=1.0, scorer_weight=0, provider_retries=0,
        budgets=str(budgets),
    )
    app = create_app(settings, router, core=trained.core, transport=httpx.MockTransport(provider))
    server = LiveServer(app).start()
    try:
        body = json.dumps({"model": "llmroute", "messages": [{"role": "user", "content": "What is 2 + 2?"}],
                           "llmroute": {"tenant": "acme", "target": "10%"}}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            deadline = time.monotonic() + 60
            while len(calls) < 2:  # the first attempt answered and was escalated; the second is running
                assert time.monotonic() < deadline, f"the cascade did not reach its second attempt (calls: {calls})"
                time.sleep(0.02)
        # the client has hung up mid-cascade
        deadline = time.monotonic() + 15
        while True:
            with DecisionLogStore(log_url) as store:
                total, n = BudgetLedger(store.engine).charges_total()
            if n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert n == 1 and total == pytest.approx(FIRST_COST)  # the first attempt, paid, is booked once
        assert cancelled.wait(10)  # the second call was cancelled, not left running for a client that is gone
        assert len(calls) == 2  # and no third model was tried
    finally:
        server.stop()
