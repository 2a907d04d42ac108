"""A service polling ``models:/llmroute@champion`` prepares the ``challenger`` version ahead (download,
checks, load, smoke routing) and a promotion then only swaps it in; a challenger that fails its checks
is not prepared again, and promoted anyway it is refused by the normal reload (the router is kept)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from llmroute.config import Settings
from llmroute.serving import reloading
from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings
from llmroute.training.tracking import log_training_run, resolve_tracking_uri
from tests.registry.helpers import Trained, fresh_copy, store_settings

POLL_S = 0.1


def _register(good: Trained, settings: Settings, tmp_path: Path, n: int) -> Path:
    """Register ``n`` versions of the good router; the folder each version's artifact is stored in."""
    def stored() -> set[Path]:
        return {p.parent for p in (tmp_path / "store").rglob("router.json")}

    new: set[Path] = set()
    for i in range(n):
        before = stored()
        router, folder = fresh_copy(good, tmp_path / f"v{i + 1}")
        log_training_run(router, folder, good.logs, None, settings)
        new = stored() - before
    [last] = new
    return last


def _until(what: str, cond: Callable[[], bool], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, f"not {what} after {limit_s} s"
        time.sleep(0.05)


def _messages(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("llmroute") and r.getMessage().startswith(start)]


def _service(settings: Settings) -> TestClient:
    serve = ServeSettings(model="models:/llmroute@champion", reload_poll_s=POLL_S, decision_log_url="off",
                          admin_api_keys=["admin-key"])
    return TestClient(create_app(serve, core=settings), raise_server_exceptions=False)


def _count_pins(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Record the version of every candidate the service pins (downloads and verifies)."""
    pins: list[str | None] = []
    real = reloading.prepare_candidate

    def counted(model: str, core: Settings, pinned: str | None = None) -> Any:
        pins.append(pinned)
        return real(model, core, pinned)

    monkeypatch.setattr(reloading, "prepare_candidate", counted)
    return pins


def test_a_promotion_swaps_in_the_challenger_prepared_ahead(good: Trained, reg_home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    settings = store_settings(reg_home, tmp_path / "store")
    _register(good, settings, tmp_path, 2)
    registry = MlflowClient(tracking_uri=resolve_tracking_uri(settings))
    registry.set_registered_model_alias("llmroute", "champion", "1")  # challenger: version 2
    pins = _count_pins(monkeypatch)
    caplog.set_level(logging.INFO, logger="llmroute")
    with _service(settings) as c:
        _until("serving version 1", lambda: c.get("/ready").json().get("router_version") == "llmroute/1")
        _until("version 2 prepared", lambda: bool(_messages(caplog, "prepared llmroute/2 ahead of a promotion")))
        ready = c.get("/ready").json()
        assert ready["router_version"] == "llmroute/1" and ready["prepared_version"] == "llmroute/2"  # not served yet
        time.sleep(5 * POLL_S)  # more polls: the prepared version is kept, not prepared again
        assert pins.count("llmroute/2") == 1, pins
        routed = c.post("/route", json={"prompt": "What is 2 + 2?"}, headers={"Authorization": "Bearer admin-key"})
        assert routed.json()["router_version"] == "llmroute/1"

        registry.set_registered_model_alias("llmroute", "champion", "2")  # the promotion
        _until("serving version 2", lambda: c.get("/ready").json()["router_version"] == "llmroute/2")
        assert "prepared_version" not in c.get("/ready").json()  # swapped in: nothing held ahead any more
        routed = c.post("/route", json={"prompt": "What is 2 + 2?"}, headers={"Authorization": "Bearer admin-key"})
        assert routed.status_code == 200 and routed.json()["router_version"] == "llmroute/2"
        metrics = c.get("/metrics", headers={"Authorization": "Bearer admin-key"}).text
    assert pins.count("llmroute/2") == 1, pins  # the promotion downloaded and checked nothing again
    [swap] = _messages(caplog, "serving router llmroute/2")
    assert "prepared in advance (pinned and verified" in swap and "smoke-routed" in swap, swap
    assert "the poll saw it at" in swap, swap
    assert 'llmroute_reloads_total{result="ok"} 2.0' in metrics  # the first load and the promotion


def test_a_challenger_that_fails_its_checks_is_not_prepared_again_and_refused_when_promoted(
    good: Trained, reg_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = store_settings(reg_home, tmp_path / "store")
    stored = _register(good, settings, tmp_path, 2)
    booster = next(stored.glob("*lightgbm*.txt"))
    booster.write_text(booster.read_text()[:500])  # version 2's artifact is damaged in the store
    registry = MlflowClient(tracking_uri=resolve_tracking_uri(settings))
    registry.set_registered_model_alias("llmroute", "champion", "1")
    caplog.set_level(logging.INFO, logger="llmroute")
    with _service(settings) as c:
        _until("serving version 1", lambda: c.get("/ready").json().get("router_version") == "llmroute/1")
        _until("version 2 refused", lambda: bool(_messages(caplog, "preparing llmroute/2 ahead of a promotion failed")))
        time.sleep(10 * POLL_S)
        [failed] = _messages(caplog, "preparing llmroute/2 ahead of a promotion failed")  # tried once
        assert booster.name in failed, failed
        ready = c.get("/ready").json()
        assert "last_reload_error" not in ready and "prepared_version" not in ready  # nothing reloaded or kept

        registry.set_registered_model_alias("llmroute", "champion", "2")  # promoted anyway
        _until("the reload refused", lambda: "last_reload_error" in c.get("/ready").json())
        ready = c.get("/ready").json()
        routed = c.post("/route", json={"prompt": "What is 2 + 2?"}, headers={"Authorization": "Bearer admin-key"})
    assert ready["router_version"] == "llmroute/1" and booster.name in ready["last_reload_error"]["error"]
    assert routed.status_code == 200 and routed.json()["router_version"] == "llmroute/1"
    assert not _messages(caplog, "serving router llmroute/2")
