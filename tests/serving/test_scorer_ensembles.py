"""The response scorer in the cascade and the best-of-N / majority-vote ensembles, over real HTTP
against the replay server; plus the confidence rule and answer normalisation as plain functions."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.cascade import combine_confidence, normalise_answer
from llmroute.serving.replay import create_replay_app
from llmroute.serving.settings import ServeSettings
from llmroute.training.scorer import ResponseScorer
from tests.serving.conftest import Trained
from tests.serving.servers import LiveServer

Start = Callable[..., httpx.Client]


@pytest.fixture
def prompt(trained: Trained) -> str:
    counts = trained.logs.groupby("prompt")["model"].nunique()
    return str(counts[counts == len(trained.router.models)].index[5])


@pytest.fixture
def start(trained: Trained, router: Router, live: list[LiveServer], scorer_folder: Path) -> Start:
    """Start a replay server and the service; ``with_scorer`` serves the session scorer with the router."""

    def _start(serve: dict[str, Any] | None = None, with_scorer: bool = True, load: bool = False,
               **replay: Any) -> httpx.Client:
        rep = LiveServer(create_replay_app(trained.logs, **replay)).start()
        live.append(rep)
        options: dict[str, Any] = {
            "model": str(trained.folder), "default_base_url": f"{rep.url}/v1", "provider_timeout_s": 2.0,
            "provider_retries": 0, "cascade_confidence": 0.0, **(serve or {}),
        }
        if load:  # let the service load router (and scorer) from options["model"]
            app = create_app(ServeSettings(**options), core=trained.core)
        else:
            scorer = ResponseScorer.load(scorer_folder, router.embedder) if with_scorer else None
            app = create_app(ServeSettings(**options), router, core=trained.core, scorer=scorer)
        svc = LiveServer(app).start()
        live.append(svc)
        if load:
            deadline = time.monotonic() + 60
            while httpx.get(f"{svc.url}/ready").status_code != 200:
                assert time.monotonic() < deadline, "service did not load the router"
                time.sleep(0.1)
        return httpx.Client(base_url=svc.url, timeout=60)

    return _start


def _chat(client: httpx.Client, prompt: str, **llmroute: Any) -> httpx.Response:
    body: dict[str, Any] = {"model": "llmroute", "messages": [{"role": "user", "content": prompt}]}
    if llmroute:
        body["llmroute"] = llmroute
    return client.post("/v1/chat/completions", json=body)


def test_combine_confidence_is_weighted_mean_of_available_signals() -> None:
    assert combine_confidence(0.6) == 0.6
    assert combine_confidence(0.6, None, 1.0) == pytest.approx(0.8)
    assert combine_confidence(0.6, 0.9, None, scorer_weight=2) == pytest.approx((0.6 + 1.8) / 3)
    assert combine_confidence(0.6, 0.9, 0.3, scorer_weight=1) == pytest.approx(0.6)
    assert combine_confidence(0.6, 0.0, None, scorer_weight=0) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("text", "key"),
    [(" (B). ", "b"), ("Answer: B", "b"), ("b", "b"), ("The answer is 42", "42"), ("42.", "42"),
     ("  Paris  ", "paris"), ("Hello   World", "hello world"), ("Reasoning...\nAnswer: C", "c")],
)
def test_normalise_answer(text: str, key: str) -> None:
    assert normalise_answer(text) == key


def test_scorer_signal_in_attempts(start: Start, prompt: str) -> None:
    client = start(serve={"scorer_weight": 2.0})
    with client:
        r = _chat(client, prompt)
    assert r.status_code == 200, r.text
    info = r.json()["llmroute"]
    assert info["scorer"] is True and info["mode"] == "cascade"
    [a] = info["attempts"]
    assert 0.0 <= a["scorer_probability"] <= 1.0 and a["logprob_confidence"] is None
    assert a["confidence"] == pytest.approx((a["router_probability"] + 2.0 * a["scorer_probability"]) / 3.0)


def test_low_scorer_confidence_escalates(start: Start, prompt: str) -> None:
    client = start(serve={"cascade_confidence": 1.0, "cascade_max_attempts": 3})
    with client:
        r = _chat(client, prompt)
    assert r.status_code == 200, r.text
    attempts = r.json()["llmroute"]["attempts"]
    for a in attempts[:-1]:
        assert a["escalated_because"].startswith("confidence") and a["scorer_probability"] is not None
    assert r.json()["model"] == max(attempts, key=lambda a: a["confidence"])["model"]


def test_without_scorer_behaves_as_before(start: Start, prompt: str) -> None:
    client = start(with_scorer=False)
    with client:
        r = _chat(client, prompt)
    [a] = r.json()["llmroute"]["attempts"]
    assert r.json()["llmroute"]["scorer"] is False and a["scorer_probability"] is None
    assert a["confidence"] == a["router_probability"]


@pytest.mark.parametrize("use_scorer", [True, False])
def test_scorer_loaded_from_router_folder(
    start: Start, prompt: str, trained: Trained, scorer_folder: Path, tmp_path: Path, use_scorer: bool
) -> None:
    folder = tmp_path / "router"
    shutil.copytree(trained.folder, folder)
    shutil.copytree(scorer_folder, folder / "scorer")
    client = start(serve={"model": str(folder), "use_scorer": use_scorer}, load=True)
    with client:
        r = _chat(client, prompt)
    assert r.status_code == 200, r.text
    assert r.json()["llmroute"]["scorer"] is use_scorer
    assert (r.json()["llmroute"]["attempts"][0]["scorer_probability"] is not None) is use_scorer


def test_best_of_n_calls_n_models_and_keeps_the_most_confident(start: Start, prompt: str, trained: Trained) -> None:
    client = start()
    with client:
        routed = client.post("/route", json={"prompt": prompt}).json()
        r = _chat(client, prompt, best_of_n=3)
    assert r.status_code == 200, r.text
    body = r.json()
    info = body["llmroute"]
    attempts = info["attempts"]
    assert info["mode"] == "best_of_n" and len(attempts) == 3 and len({a["model"] for a in attempts}) == 3
    assert attempts[0]["model"] == routed["model"]
    assert all(a["ok"] and a["cost_usd"] > 0 and a["scorer_probability"] is not None for a in attempts)
    best = max(attempts, key=lambda a: a["confidence"])
    assert body["model"] == best["model"] == r.headers["X-LLMRoute-Model"]
    rec = trained.logs[(trained.logs["prompt"] == prompt) & (trained.logs["model"] == best["model"])].iloc[0]
    assert body["choices"][0]["message"]["content"] == rec["response"]
    assert info["total_cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in attempts))


def test_best_of_n_survives_a_failing_member(start: Start, prompt: str) -> None:
    probe = start()
    with probe:
        first = probe.post("/route", json={"prompt": prompt}).json()["model"]
    client = start(model_failure_rates={first: 1.0})
    with client:
        r = _chat(client, prompt, best_of_n=2)
    assert r.status_code == 200, r.text
    attempts = r.json()["llmroute"]["attempts"]
    assert not attempts[0]["ok"] and attempts[0]["cost_usd"] == 0 and attempts[1]["ok"]
    assert r.json()["model"] == attempts[1]["model"]


def test_majority_vote_returns_the_most_common_answer(start: Start, trained: Trained) -> None:
    # a multiple-choice prompt on which the 5 most promising models do not all agree, if there is one
    client = start()
    with client:
        counts = trained.logs.groupby("prompt")["model"].nunique()
        prompt = str(counts[counts == len(trained.router.models)].index[7])
        r = _chat(client, prompt, majority_vote=5)
    assert r.status_code == 200, r.text
    info = r.json()["llmroute"]
    attempts = info["attempts"]
    assert info["mode"] == "majority_vote" and len(attempts) == 5 and all(a["ok"] for a in attempts)
    votes = Counter(a["answer_key"] for a in attempts)
    top = max(votes.values())
    chosen = next(a for a in attempts if a["model"] == r.json()["model"])
    assert votes[chosen["answer_key"]] == top
    tied = [a for a in attempts if votes[a["answer_key"]] == top]
    assert chosen["confidence"] == max(a["confidence"] for a in tied)
    assert normalise_answer(r.json()["choices"][0]["message"]["content"]) == chosen["answer_key"]
    assert info["total_cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in attempts))


def test_ensemble_options_are_validated(start: Start, prompt: str) -> None:
    client = start(serve={"max_ensemble": 3})
    with client:
        both = _chat(client, prompt, best_of_n=2, majority_vote=3)
        too_many = _chat(client, prompt, best_of_n=4)
        on_route = client.post("/route", json={"prompt": prompt, "best_of_n": 2})
    assert both.status_code == 422 and "at most one" in both.json()["error"]["message"]
    assert too_many.status_code == 422 and "at most 3" in too_many.json()["error"]["message"]
    assert on_route.status_code == 422
