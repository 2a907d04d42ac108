"""`llmroute replay-server` and `llmroute serve` as real subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from llmroute.cli.serve import register
from llmroute.serving.compute import ComputeLimiter
from tests.serving.conftest import Trained

LAUNCH = "import sys, typer; from llmroute.cli.serve import register; app = typer.Typer(); register(app); app(sys.argv[1:])"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(proc: subprocess.Popen[bytes], url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout} s")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_replay_server_and_serve_commands(
    trained: Trained, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    logs = tmp_path / "logs.parquet"
    trained.logs.to_parquet(logs)
    env = {**os.environ, "LLMROUTE_HOME": str(trained.core.home)}
    rport, sport = _port(), _port()
    replay_err, serve_err = tmp_path / "replay.err", tmp_path / "serve.err"
    with replay_err.open("wb") as rerr, serve_err.open("wb") as serr:
        procs.append(subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "replay-server", "--logs", str(logs), "--port", str(rport),
             "--fail-model", "gpt-4-1106-preview=1.0"], env=env, stderr=rerr,
        ))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "serve", "--model", str(trained.folder), "--port", str(sport),
             "--api-key", "k", "--default-base-url", f"http://127.0.0.1:{rport}/v1", "--confidence", "0",
             "--retries", "0", "--log-level", "warning"], env=env, stderr=serr,
        ))
    _wait(procs[0], f"http://127.0.0.1:{rport}/v1/models")
    _wait(procs[1], f"http://127.0.0.1:{sport}/ready")
    # defect 8: both say what they serve and where (replay-server printed nothing, serve never said it loaded)
    assert f"on http://127.0.0.1:{rport}/v1" in replay_err.read_text()
    deadline = time.monotonic() + 15  # the log line follows the swap that makes /ready answer 200
    while "serving router" not in serve_err.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    said = serve_err.read_text()
    assert f"listening on http://127.0.0.1:{sport}" in said and "llmroute: serving router " in said
    prompt = str(trained.logs["prompt"].iloc[0])
    r = httpx.post(
        f"http://127.0.0.1:{sport}/v1/chat/completions", headers={"Authorization": "Bearer k"}, timeout=60,
        json={"model": "llmroute", "messages": [{"role": "user", "content": prompt}],
              "llmroute": {"allowed_models": ["gpt-4-1106-preview", "claude-v2"]}},
    )
    assert r.status_code == 200, r.text
    attempts = r.json()["llmroute"]["attempts"]
    assert r.json()["model"] == "claude-v2" and attempts[-1]["ok"]
    assert all(a["ok"] == (a["model"] == "claude-v2") for a in attempts)


def test_cli_rejects_bad_pairs(trained: Trained) -> None:
    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["replay-server", "--logs", "x.parquet", "--fail-model", "nonsense"])
    assert r.exit_code == 2 and "MODEL=VALUE" in r.output
    r = CliRunner().invoke(app, ["replay-server", "--logs", str(trained.folder / "missing.parquet")])
    assert r.exit_code == 2 and "missing.parquet" in r.output


def test_serve_rejects_bad_data_policies_and_catalogs(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["serve", "--tenant-policy", "acme"])
    assert r.exit_code == 2 and "TENANT=VALUE" in r.output
    r = CliRunner().invoke(app, ["serve", "--tenant-policy", "acme=nowhere"])
    assert r.exit_code == 2 and "data_policy_by_tenant.acme" in r.output
    r = CliRunner().invoke(app, ["serve", "--data-policy", "local"])
    assert r.exit_code == 2 and "data_policy" in r.output
    bad = tmp_path / "cat.yaml"
    bad.write_text("models:\n  - name: x\n    local: maybe\n")
    r = CliRunner().invoke(app, ["serve", "--catalog", str(bad)])
    assert r.exit_code == 2 and "cat.yaml" in r.output and "model #1 ('x')" in r.output


def test_compute_limiter_limits_the_calling_thread_only() -> None:
    from threadpoolctl import ThreadpoolController

    def openmp_threads() -> set[int]:
        return {i["num_threads"] for i in ThreadpoolController().select(user_api="openmp").info()}

    limiter = ComputeLimiter(1)
    seen: dict[str, set[int]] = {}

    def work() -> None:
        limiter.apply()
        seen["limited"] = openmp_threads()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    if not seen["limited"]:
        pytest.skip("no OpenMP runtime loaded")
    assert seen["limited"] == {1}
    ComputeLimiter(None).apply()  # no-op


def test_compute_limiter_limits_openblas_for_the_process() -> None:
    """OpenBLAS threads spin against the request threads too; its limit is process-wide. Checked in a
    fresh interpreter, as a server starts (in this one, training has already used OpenBLAS)."""
    code = (
        "import threading, numpy\n"
        "from threadpoolctl import ThreadpoolController\n"
        "from llmroute.serving.compute import ComputeLimiter\n"
        "t = threading.Thread(target=ComputeLimiter(1).apply); t.start(); t.join()\n"
        "print(sorted({i['num_threads'] for i in ThreadpoolController().select(user_api='blas').info()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() in ("[1]", "[]"), out.stdout + out.stderr


def test_serve_with_workers_hands_its_settings_to_the_worker_processes(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from llmroute.serving.app import app_from_environment
    from llmroute.serving.settings import ServeSettings

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    for name in ("LLMROUTE_SERVE_MODEL", "LLMROUTE_SERVE_API_KEYS", "LLMROUTE_SERVE_PROVIDER_BASE_URLS",
                 "LLMROUTE_SERVE_PROVIDER_RETRIES", "LLMROUTE_HOME"):
        monkeypatch.setenv(name, "")  # restored after the test: the command writes them for its workers
        monkeypatch.delenv(name)
    app = typer.Typer()
    register(app)
    home = trained.core.home
    r = CliRunner().invoke(app, [
        "serve", "--workers", "2", "--model", str(trained.folder), "--api-key", "k1", "--api-key", "k2",
        "--base-url", "m=http://127.0.0.1:9/v1", "--retries", "0", "--home", str(home),
    ])
    assert r.exit_code == 0, r.output
    target, kw = calls[0]
    assert target == "llmroute.serving.app:app_from_environment"
    assert kw["factory"] is True and kw["workers"] == 2 and kw["access_log"] is False
    settings = ServeSettings()
    assert settings.model == str(trained.folder) and settings.key_values() == ("k1", "k2")
    assert settings.provider_base_urls == {"m": "http://127.0.0.1:9/v1"} and settings.provider_retries == 0
    assert os.environ["LLMROUTE_HOME"] == str(home)
    assert (home / "decisions.sqlite").exists()  # migrated once before the workers start, not by each
    assert app_from_environment().title == "llmroute"

    calls.clear()
    r = CliRunner().invoke(app, ["serve", "--model", str(trained.folder), "--access-log", "--home", str(home)])
    assert r.exit_code == 0, r.output
    assert not isinstance(calls[0][0], str) and calls[0][1]["access_log"] is True and "workers" not in calls[0][1]
