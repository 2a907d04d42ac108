"""Schemathesis against the live service (a short run; ``benchmarks/reliability.py fuzz`` runs thousands):
no 5xx for generated valid and invalid requests, and a fair share of them valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.router.router import Router
from llmroute.serving.app import create_app
from llmroute.serving.http_protocol import PROTOCOL_PATH
from llmroute.serving.settings import ServeSettings
from tests.serving.conftest import Trained
from tests.serving.fuzzing import fuzz_schema, stub_provider
from tests.serving.servers import LiveServer


@pytest.mark.slow
def test_fuzzing_finds_no_5xx(router: Router, trained: Trained, tmp_path: Path) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    stub = stub_provider()
    settings = ServeSettings(model="/nonexistent", default_base_url=f"{stub.url}/v1",
                             decision_log_url=f"sqlite:///{tmp_path / 'log.sqlite'}",
                             decision_log_spool_dir=str(tmp_path / "spool"))
    server = LiveServer(create_app(settings, router, core=trained.core), http=PROTOCOL_PATH).start()
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        result = fuzz_schema(schema, 400, lambda case: case.call(base_url=server.url, timeout=60))
    finally:
        server.stop()
        stub.stop()
    assert result["requests"] >= 300, result
    assert result["5xx"] == 0, result
    assert result["valid_share"] >= 0.3, result
