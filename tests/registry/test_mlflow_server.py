"""Against a real `mlflow server` on 127.0.0.1: train -> register -> promote -> load by alias."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmroute.artifacts.loading import latest_router_dir, load_router, load_verified_router
from llmroute.artifacts.registry import list_models
from llmroute.cli import app
from llmroute.config import Settings
from llmroute.training.registry import promote
from llmroute.training.tracking import log_training_run
from tests.processes import free_port, stop_process_group
from tests.registry.helpers import Trained, assert_same_decisions, fresh_copy, held_out_prompts

STARTUP_SECONDS = 90


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "db").mkdir()
    log = (tmp_path / "server.log").open("wb")
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {STARTUP_SECONDS} s:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)
        log.close()


@pytest.mark.slow
def test_train_register_promote_load_through_server(
    mlflow_server: str,
    train_logs: Path,
    test_logs: Path,
    bad: Trained,
    reg_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # the team-server route of the issue
    settings = Settings(home=reg_home)

    # train (CLI): logs the run and registers version 1 as challenger on the server
    res = CliRunner().invoke(app, ["train", "--logs", str(train_logs), "--embedder", "minilm", "--home", str(reg_home)])
    assert res.exit_code == 0, res.output
    assert "models:/llmroute/1 with alias 'challenger'" in res.output
    folder = latest_router_dir(settings)
    assert json.loads((folder / "router.json").read_text())["version"] == "llmroute/1"

    # promote: the first challenger becomes champion; a worse one is then refused
    assert promote(settings, test_logs, echo=lambda _: None).promoted
    worse, worse_folder = fresh_copy(bad, tmp_path)
    assert log_training_run(worse, worse_folder, bad.logs, None, settings).version == "2"
    refused = promote(settings, test_logs, echo=lambda _: None)
    assert not refused.promoted

    # load by alias through the server: the same decisions as the router that was trained
    champion = load_router("models:/llmroute@champion", settings)
    assert champion.version == "llmroute/1"
    trained = load_verified_router(folder, settings.embedders_dir, str(folder))
    assert_same_decisions(trained, champion, held_out_prompts(test_logs, 200), routed=10)
    rows = {r.version: r for r in list_models(settings)}
    assert rows["1"].aliases == ("champion",) and rows["2"].aliases == ("challenger",)
    assert rows["1"].data_prompts == 200
