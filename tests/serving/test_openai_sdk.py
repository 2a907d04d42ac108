"""The service driven by the official ``openai`` Python SDK over real HTTP: chat, ``llmroute:95%``,
streaming, the X-LLMRoute-* headers, the model list, a model pinned by name, and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pandas as pd
import pytest

from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.replay import create_replay_app
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained
from tests.serving.servers import LiveServer

KEY = "client-key-1"
Start = Callable[..., openai.OpenAI]


@pytest.fixture
def prompt(trained: Trained) -> str:
    counts = trained.logs.groupby("prompt")["model"].nunique()
    return str(counts[counts == len(trained.router.models)].index[5])


@pytest.fixture
def start(trained: Trained, router: Router, live: list[LiveServer]) -> Start:
    def _start(**serve: Any) -> openai.OpenAI:
        rep = LiveServer(create_replay_app(trained.logs)).start()
        live.append(rep)
        settings = ServeSettings(
            model=str(trained.folder), default_base_url=f"{rep.url}/v1", provider_timeout_s=2.0,
            provider_retries=0, cascade_confidence=0.0, api_keys=[KEY], **serve,
        )
        svc = LiveServer(create_app(settings, router, core=trained.core)).start()
        live.append(svc)
        return openai.OpenAI(base_url=f"{svc.url}/v1", api_key=KEY, max_retries=0, timeout=30)

    return _start


def _recorded(logs: pd.DataFrame, prompt: str, model: str) -> str:
    return str(logs[(logs["prompt"] == prompt) & (logs["model"] == model)].iloc[0]["response"])


def test_chat_target_variant_headers_and_stream(start: Start, prompt: str, trained: Trained) -> None:
    client = start()
    raw = client.chat.completions.with_raw_response.create(
        model="llmroute:95%", messages=[{"role": "user", "content": prompt}], temperature=0
    )
    answer = raw.parse()
    model = raw.headers["X-LLMRoute-Model"]
    assert answer.model == model and model in trained.router.models
    assert answer.choices[0].message.content == _recorded(trained.logs, prompt, model)
    assert raw.headers["X-LLMRoute-Attempts"] == "1" and raw.headers["X-LLMRoute-Decision-Id"]
    extra = answer.model_extra or {}
    assert extra["llmroute"]["decision"]["target"] == "95% of the best model"

    chunks = list(client.chat.completions.create(
        model="llmroute", messages=[{"role": "user", "content": prompt}], stream=True
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed_model = chunks[0].model
    assert text == _recorded(trained.logs, prompt, streamed_model)


def test_models_list_has_llmroute_variants_and_the_routers_models(start: Start, router: Router) -> None:
    client = start()
    ids = [m.id for m in client.models.list()]
    assert ids[:5] == ["llmroute", "llmroute:80%", "llmroute:90%", "llmroute:95%", "llmroute:100%"]
    assert ids[5:] == list(router.models)


def test_a_model_named_directly_is_pinned(start: Start, prompt: str, trained: Trained, router: Router) -> None:
    client = start()
    routed = client.chat.completions.create(model="llmroute", messages=[{"role": "user", "content": prompt}])
    pinned = next(m for m in router.models if m != routed.model)
    raw = client.chat.completions.with_raw_response.create(
        model=pinned, messages=[{"role": "user", "content": prompt}]
    )
    answer = raw.parse()
    assert answer.model == pinned and raw.headers["X-LLMRoute-Model"] == pinned
    assert answer.choices[0].message.content == _recorded(trained.logs, prompt, pinned)
    decision = (answer.model_extra or {})["llmroute"]["decision"]
    assert decision["model"] == pinned and decision["reason"] == f"pinned: the request named model {pinned}"
    assert [c["model"] for c in decision["candidates"] if c["eligible"]] == [pinned]
    # the request's constraints still apply to a pinned model
    with pytest.raises(openai.UnprocessableEntityError) as exc:
        client.chat.completions.create(
            model=pinned, messages=[{"role": "user", "content": prompt}],
            extra_body={"llmroute": {"max_cost_usd": 1e-12}},
        )
    assert "max_cost_usd" in str(exc.value)


def test_errors_reach_the_sdk_as_its_exceptions(start: Start, prompt: str, trained: Trained) -> None:
    client = start()
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": prompt}])
    assert exc.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="llmroute:abc", messages=[{"role": "user", "content": prompt}])
    wrong = openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="llmroute", messages=[{"role": "user", "content": prompt}])
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
