"""The service writes the decision log: /route decisions, /feedback, redaction, logging off, gauges."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from llmroute.data.decision_log import DecisionLogStore, default_db_url, prompt_sha256
from llmroute.router.router import Router
from llmroute.router.text import focus_text
from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "Which planet is known as the red planet? zebra-umbrella-7731"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh LLMROUTE_HOME: the service's default log is <home>/decisions.sqlite."""
    monkeypatch.setenv("LLMROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMROUTE_SERVE_DECISION_LOG_URL", raising=False)
    return tmp_path / "home"


def _app(router: Router, **kw: Any) -> TestClient:
    settings = ServeSettings(**{"model": "/nonexistent/router", "api_keys": [KEY], **kw})
    return TestClient(create_app(settings, router), raise_server_exceptions=False)  # core: from the environment


def _joined(home: Path) -> pd.DataFrame:
    with DecisionLogStore(default_db_url(home)) as store:
        frames = [b.to_pandas() for b in store.joined()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _metric(text: str, name: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


def test_route_and_feedback_are_logged_and_join(home: Path, router: Router) -> None:
    request = {"prompt": PROMPT, "target": "95%", "user": "u1", "tenant": "t1", "task": router.quality.tasks_[0],
               "allowed_models": list(router.models[:3]), "max_cost_usd": 1.0}
    with _app(router) as c:
        r = c.post("/route", json=request, headers=AUTH)
        assert r.status_code == 200, r.text
        routed = r.json()
        fb = c.post("/feedback", json={"decision_id": routed["decision_id"], "quality": 0.75, "comment": "ok"},
                    headers=AUTH)
        assert fb.status_code == 202, fb.text
        assert fb.json()["decision_id"] == routed["decision_id"] and fb.json()["feedback_id"]
        c.get("/metrics", headers=AUTH)  # gauges are read at scrape time
        metrics = c.get("/metrics", headers=AUTH).text
    assert _metric(metrics, "llmroute_decision_log_enabled") == 1
    assert _metric(metrics, "llmroute_decision_log_submitted") == 2
    assert _metric(metrics, "llmroute_decision_log_dropped") == 0
    assert _metric(metrics, "llmroute_decision_log_failed") == 0
    # closing the app flushed the writer
    df = _joined(home)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["decision_id"] == routed["decision_id"]
    assert row["source"] == "route" and row["tenant"] == "t1" and row["user"] == "u1"
    assert row["prompt"] == PROMPT and row["prompt_sha256"] == prompt_sha256(PROMPT)
    assert row["chosen_model"] == routed["model"] and row["propensity"] == 1.0
    assert row["router_version"] == router.version == routed["router_version"]
    assert row["embedder"] == router.embedder.spec
    assert row["rule"] == routed["rule"] and row["knob"] == pytest.approx(routed["knob"])
    assert row["target"] == routed["target"] and row["task_hint"] == router.quality.tasks_[0]
    assert [c["model"] for c in row["candidates"]] == [c["model"] for c in routed["candidates"]]
    assert [c["eligible"] for c in row["candidates"]] == [c["eligible"] for c in routed["candidates"]]
    constraints = json.loads(row["constraints"])
    assert constraints["allowed_models"] == list(router.models[:3]) and constraints["max_cost_usd"] == 1.0
    # the embedding the router used, captured rather than recomputed
    expected = router.embedder.encode([focus_text(PROMPT)])[0]
    assert np.allclose(np.asarray(row["embedding"], dtype=np.float32), expected, atol=1e-5)
    # no outcome for /route; the feedback joined
    assert pd.isna(row["outcome_model"])
    assert row["quality"] == 0.75 and row["feedback_comment"] == "ok"


class _CountingEmbedder:
    """The router's embedder, counting the texts it embeds."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return np.asarray(self.inner.encode(texts))

    def __getattr__(self, name: str) -> Any:  # spec, fingerprint, independent_rows of the real one
        return getattr(self.inner, name)


def test_a_logged_decision_embeds_its_prompt_once(home: Path, router: Router) -> None:
    """The log stores the embedding the decision carries (Decision.embedding): the prompt is not embedded again."""
    counting = _CountingEmbedder(router.embedder)
    with _app(dataclasses.replace(router, embedder=counting)) as c:
        r = c.post("/route", json={"prompt": PROMPT}, headers=AUTH)
        assert r.status_code == 200, r.text
    assert counting.texts == [focus_text(PROMPT)]
    row = _joined(home).iloc[0]
    expected = router.embedder.encode([focus_text(PROMPT)])[0]
    assert np.allclose(np.asarray(row["embedding"], dtype=np.float32), expected, atol=1e-5)


def test_redaction_stores_hash_and_embedding_only(home: Path, router: Router) -> None:
    with _app(router, redact_prompts=True) as c:
        r = c.post("/route", json={"messages": [{"role": "user", "content": PROMPT}]}, headers=AUTH)
        assert r.status_code == 200, r.text
    row = _joined(home).iloc[0]
    assert row["decision_id"] == r.json()["decision_id"]
    assert pd.isna(row["prompt"])
    assert len(row["prompt_sha256"]) == 64 and row["embedding"] is not None and len(row["embedding"]) > 0
    stored = b"".join(p.read_bytes() for p in home.glob("decisions.sqlite*"))
    assert b"zebra-umbrella-7731" not in stored


@pytest.mark.parametrize("url", ["off", "", "OFF"])
def test_logging_off(home: Path, router: Router, url: str) -> None:
    with _app(router, decision_log_url=url) as c:
        assert c.post("/route", json={"prompt": PROMPT}, headers=AUTH).status_code == 200
        fb = c.post("/feedback", json={"decision_id": "abc", "quality": 0.5}, headers=AUTH)
        metrics = c.get("/metrics", headers=AUTH).text
    assert fb.status_code == 503 and fb.json()["error"]["type"] == "decision_log_off"
    assert _metric(metrics, "llmroute_decision_log_enabled") == 0
    assert not list(home.glob("decisions.sqlite*"))


def test_explicit_log_url(home: Path, router: Router, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'log.sqlite'}"
    with _app(router, decision_log_url=url) as c:
        decision_id = c.post("/route", json={"prompt": PROMPT}, headers=AUTH).json()["decision_id"]
    with DecisionLogStore(url) as store:
        assert [d.decision_id for batch in store.iter_decisions() for d in batch] == [decision_id]
    assert not list(home.glob("decisions.sqlite*"))


def test_unopenable_log_fails_startup(home: Path, router: Router, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = _app(router, decision_log_url=f"sqlite:///{blocker / 'log.sqlite'}")
    with pytest.raises(RuntimeError, match="cannot open the decision log"), app:
        pass


@pytest.fixture
def client(home: Path, router: Router) -> Iterator[TestClient]:
    with _app(router) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"decision_id": "d1", "quality": 1.5}, "quality", "from 0 to 1, got 1.5"),
        ({"decision_id": "d1", "quality": -0.1}, "quality", "from 0 to 1, got -0.1"),
        ({"decision_id": "d1", "quality": "good"}, "quality", "number"),
        ({"decision_id": "d1"}, "quality", "required"),
        ({"quality": 0.5}, "decision_id", "required"),
        ({"decision_id": "", "quality": 0.5}, "decision_id", "at least 1"),
        ({"decision_id": "x" * 65, "quality": 0.5}, "decision_id", "at most 64"),
        ({"decision_id": "d1", "quality": 0.5, "score": 1}, "score", "not permitted"),
    ],
)
def test_feedback_validation(client: TestClient, body: dict[str, Any], field: str, says: str) -> None:
    r = client.post("/feedback", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request"
    assert any(f["loc"] == field and says in f["msg"] for f in err["fields"]), err
    assert field in err["message"]


def test_feedback_rejects_nan_and_needs_auth(client: TestClient) -> None:
    r = client.post("/feedback", content=b'{"decision_id": "d1", "quality": NaN}',
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert client.post("/feedback", json={"decision_id": "d1", "quality": 0.5}).status_code == 401


def test_feedback_for_an_unknown_decision_is_404_unless_it_may_still_be_spooled(home: Path, router: Router) -> None:
    from datetime import UTC, datetime, timedelta

    from llmroute.data.decision_log.records import new_decision_id

    old_unknown = new_decision_id(datetime.now(UTC) - timedelta(hours=2))
    fresh_unknown = new_decision_id()  # issued a moment ago: may be in another worker's spool
    with _app(router, feedback_grace_s=600) as c:
        for unknown in ("no-such-id", old_unknown):
            r = c.post("/feedback", json={"decision_id": unknown, "quality": 1.0}, headers=AUTH)
            assert r.status_code == 404 and r.json()["error"]["type"] == "unknown_decision", r.text
        assert c.post("/feedback", json={"decision_id": fresh_unknown, "quality": 1.0}, headers=AUTH).status_code == 202
        decision_id = c.post("/route", json={"prompt": PROMPT}, headers=AUTH).json()["decision_id"]
        # known at once (accepted by this process), before it reaches the database
        assert c.post("/feedback", json={"decision_id": decision_id, "quality": 0.5}, headers=AUTH).status_code == 202
    with _app(router, feedback_grace_s=0) as c:  # a new process: the decision is found in the database
        assert c.post("/feedback", json={"decision_id": decision_id, "quality": 0.75}, headers=AUTH).status_code == 202
        r = c.post("/feedback", json={"decision_id": fresh_unknown, "quality": 1.0}, headers=AUTH)
        assert r.status_code == 404
    with DecisionLogStore(default_db_url(home)) as store:
        assert store.counts() == {"decisions": 1, "outcomes": 0, "feedback": 3}
