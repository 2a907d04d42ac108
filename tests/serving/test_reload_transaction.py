"""Reload as a transaction: damaged router folders are refused and the served router stays; a native
crash while loading one (LightGBM aborts on a truncated model) kills only the isolated check process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmroute.router.router import Router
from llmroute.router.smoke import RouterSmokeError, smoke_route
from llmroute.serving.app import create_app
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained
from tests.serving.corruptions import CORRUPTIONS, Corruption, damaged_copy

ADMIN = {"Authorization": "Bearer admin-key"}


def _app(folder: Path, trained: Trained, **kw: Any) -> TestClient:
    settings = ServeSettings(model=str(folder), admin_api_keys=["admin-key"], decision_log_url="off", **kw)
    return TestClient(create_app(settings, core=trained.core), raise_server_exceptions=False)


def _wait_ready(c: TestClient) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 120
    while (r := c.get("/ready")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _refused_and_kept(c: TestClient, served: Path, good: Path, corruption: Corruption, version: str) -> str:
    damaged_copy(good, corruption, served)
    r = c.post("/admin/reload", headers=ADMIN)
    assert r.status_code == 503, (corruption.name, r.text)
    error = r.json()["error"]
    assert error["type"] == "reload_failed" and error["router_version"] == version, corruption.name
    ready = c.get("/ready").json()
    assert ready["router_version"] == version and ready["last_reload_error"]["error"], corruption.name
    routed = c.post("/route", json={"prompt": "What is 2 + 2?"}, headers=ADMIN)
    assert routed.status_code == 200 and routed.json()["router_version"] == version, corruption.name
    return str(error["message"])


def test_a_torn_lightgbm_file_is_refused_without_killing_the_server(good: Path, trained: Trained,
                                                                          tmp_path: Path) -> None:
    served = tmp_path / "served"
    shutil.copytree(good, served)
    with _app(served, trained) as c:
        version = _wait_ready(c)["router_version"]
        # torn in the middle, its closing sections intact: only loading it tells, and LightGBM aborts
        [torn] = [k for k in CORRUPTIONS if k.name == "lightgbm_torn_middle"]
        message = _refused_and_kept(c, served, good, torn, version)
        # LightGBM's fatal error inside its OpenMP parse kills the child with SIGABRT when scikit-learn's
        # OpenMP runtime was loaded first (the child used to import it through training), else SIGSEGV;
        # either way only the child dies and the reason names the signal
        assert ("crashed (SIGABRT)" in message or "crashed (SIGSEGV)" in message), message
        assert "isolated check" in message, message
        shutil.rmtree(served)
        shutil.copytree(good, served)  # the folder is whole again: the next reload succeeds
        r = c.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert "last_reload_error" not in c.get("/ready").json()
        metrics = c.get("/metrics", headers=ADMIN).text
    assert 'llmroute_reloads_total{result="rejected"} 1.0' in metrics
    assert 'llmroute_reloads_total{result="ok"} 2.0' in metrics  # the initial load and the reload


@pytest.mark.slow
def test_every_kind_of_damaged_folder_is_refused_and_the_router_kept(good: Path, trained: Trained,
                                                                      tmp_path: Path) -> None:
    assert len(CORRUPTIONS) >= 20
    served = tmp_path / "served"
    shutil.copytree(good, served)
    with _app(served, trained) as c:
        version = _wait_ready(c)["router_version"]
        reasons = {k.name: _refused_and_kept(c, served, good, k, version) for k in CORRUPTIONS}
    assert "does not match its recorded sha256" in reasons["checksum_mismatch_flipped_byte"]
    assert "is not one of" in reasons["default_rule_bogus"]
    assert "expected cost nan" in reasons["cost_model_nan"]


def test_polling_does_not_retry_a_refused_candidate_until_it_changes(good: Path, trained: Trained,
                                                                     tmp_path: Path) -> None:
    import json
    import time

    served = tmp_path / "served"
    shutil.copytree(good, served)
    with _app(served, trained, reload_poll_s=0.05) as c:
        version = _wait_ready(c)["router_version"]
        meta = json.loads((served / "router.json").read_text())
        meta["version"], meta["default_rule"] = "v-bad", "bogus"
        (served / "manifest.json").unlink()
        (served / "router.json").write_text(json.dumps(meta))
        deadline = time.monotonic() + 60
        while "last_reload_error" not in (ready := c.get("/ready").json()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready["router_version"] == version and "bogus" in ready["last_reload_error"]["error"]
        time.sleep(1.0)  # twenty more polls: the same candidate is not tried again
        metrics = c.get("/metrics", headers=ADMIN).text
        assert 'llmroute_reloads_total{result="rejected"} 1.0' in metrics


def test_smoke_routing_names_what_is_wrong(router: Router) -> None:
    assert smoke_route(router) > 3 * len(router.models)
    broken = Router(models=router.models[:-1], specs=router.specs, embedder=router.embedder, quality=router.quality,
                    cost_model=router.cost_model, knob_tables=router.knob_tables, default_rule=router.default_rule,
                    default_target=router.default_target, version="broken")
    with pytest.raises(RouterSmokeError, match="routing the smoke prompts|routing"):
        smoke_route(broken)
