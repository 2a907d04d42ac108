"""Train -> register -> promote -> `llmroute serve models:/llmroute@champion` -> /route and
/v1/chat/completions through the replay server with injected failures and timeouts, over real HTTP
on 127.0.0.1; then a new version is promoted and picked up by ``POST /admin/reload``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmroute.cli import app
from llmroute.data.importers import read_logs, write_logs
from llmroute.serving.replay import create_replay_app
from tests.processes import free_port, stop_process_group
from tests.serving.servers import LiveServer

REPO = Path(__file__).resolve().parents[2]
READY_SECONDS = 120


def _cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """Train logs (the first 120 RouterBench train prompts), test logs (60 test prompts), and the
    replay logs (both)."""
    tmp = tmp_path_factory.mktemp("registry-serve")
    parts = []
    for split, n in (("train", 120), ("test", 60)):
        df = read_logs(REPO / "data" / "routerbench" / f"{split}.parquet")
        ids = sorted(df["prompt_id"].unique())[:n]
        part = df[df["prompt_id"].isin(ids)].reset_index(drop=True)
        write_logs(part, tmp / f"{split}.parquet")
        parts.append(part)
    return tmp / "train.parquet", tmp / "test.parquet", pd.concat(parts, ignore_index=True)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[list[subprocess.Popen[bytes]], Path]]:
    """Holder for the `llmroute serve` process a test starts; stopped (SIGTERM) in teardown."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs, tmp_path
    for proc in procs:
        stop_process_group(proc, timeout=20)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llmroute serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"llmroute serve not ready after {READY_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_train_register_serve_by_alias_cascade_and_reload(
    slices: tuple[Path, Path, pd.DataFrame], service: tuple[list[subprocess.Popen[bytes]], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train, test, replay_logs = slices
    procs, tmp = service
    home = tmp / "home"
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "LLMROUTE_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)

    # train (registered as version 1, alias challenger) and promote it: the first champion
    out = _cli("train", "--logs", str(train), "--embedder", "minilm", "--home", str(home))
    assert "models:/llmroute/1 with alias 'challenger'" in out
    assert "promoted version 1" in _cli("promote", "--logs", str(test), "--home", str(home))

    # the replay server: the two cheapest models fail or time out on every call
    prices = replay_logs.groupby("model")["cost_usd"].mean().sort_values()
    failing, slow = str(prices.index[0]), str(prices.index[1])
    replay = LiveServer(
        create_replay_app(replay_logs, model_failure_rates={failing: 1.0}, model_timeout_rates={slow: 1.0}, timeout_s=30)
    ).start()
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp / "serve.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LLMROUTE_"))},
            "LLMROUTE_HOME": str(home), "LLMROUTE_SERVE_DECISION_LOG_URL": f"sqlite:///{tmp / 'decisions.sqlite'}",
            "LLMROUTE_SERVE_API_KEYS": '["k1"]', "LLMROUTE_SERVE_ADMIN_API_KEYS": '["a1"]', "OMP_NUM_THREADS": "1",
        }
        cmd = [
            sys.executable, "-m", "llmroute.cli", "serve", "--model", "models:/llmroute@champion", "--port", str(port),
            "--default-base-url", f"{replay.url}/v1", "--timeout", "0.5", "--retries", "1", "--max-attempts", "4",
            "--log-level", "warning",
        ]  # fmt: skip
        with log.open("wb") as fh:
            procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        _wait_ready(url, procs[0], log)
        client = httpx.Client(base_url=url, timeout=60, headers={"Authorization": "Bearer k1"})
        with client:
            models = client.get("/models").json()
            assert models["router_version"] == "llmroute/1" and models["response_scorer"] is True

            prompts = list(read_logs(test).drop_duplicates("prompt_id")["prompt"].astype(str))[:20]
            routed = client.post("/route", json={"prompt": prompts[0]}).json()
            assert routed["router_version"] == "llmroute/1" and routed["decision_id"]

            # every request is answered though the two cheapest models never answer; every attempt is costed
            for prompt in prompts:
                r = client.post("/v1/chat/completions", json={"model": "llmroute", "messages": [{"role": "user", "content": prompt}]})
                assert r.status_code == 200, r.text
                info = r.json()["llmroute"]
                attempts = info["attempts"]
                assert attempts[-1]["ok"] and r.json()["model"] not in (failing, slow)
                assert info["scorer"] is True and attempts[-1]["scorer_probability"] is not None
                assert info["total_cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in attempts))
                assert all(not a["ok"] and a["cost_usd"] == 0 for a in attempts if a["model"] in (failing, slow))

            # a low target among the two faulty models and the priciest one: the cheapest is tried first,
            # fails, and the cascade escalates until the priciest answers
            best = str(prices.index[-1])
            chat = {"model": "llmroute:0.01", "messages": [{"role": "user", "content": prompts[1]}],
                    "llmroute": {"allowed_models": [failing, slow, best]}}
            r = client.post("/v1/chat/completions", json=chat)
            assert r.status_code == 200, r.text
            forced = r.json()["llmroute"]["attempts"]
            assert forced[0]["model"] == failing and forced[0]["error_kind"] in ("http_500", "http_429")
            assert forced[0]["tries"] == 2  # one retry on 5xx/429, then escalation
            assert all(a["error_kind"] == "timeout" for a in forced if a["model"] == slow)
            assert forced[-1]["ok"] and forced[-1]["model"] == best == r.headers["X-LLMRoute-Model"]

            # a new version is trained and force-promoted; /admin/reload serves it without a restart
            _cli("train", "--logs", str(train), "--embedder", "minilm", "--home", str(home), "--seed", "7", "--no-scorer")
            _cli("promote", "--logs", str(test), "--home", str(home), "--force", "--reason", "e2e reload")
            assert client.post("/admin/reload").status_code == 403  # a client key cannot reload
            reloaded = client.post("/admin/reload", headers={"Authorization": "Bearer a1"})
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["router_version"] == "llmroute/2"
            assert reloaded.json()["previous_version"] == "llmroute/1"
            assert client.post("/route", json={"prompt": prompts[0]}).json()["router_version"] == "llmroute/2"
            assert client.get("/models").json()["response_scorer"] is False  # version 2 was trained without one
            metrics = client.get("/metrics").text
            assert "llmroute_provider_errors_total{" in metrics
    finally:
        replay.stop()
    # the decision log has every chat decision with its outcome
    from llmroute.data.decision_log import DecisionLogStore

    stop_process_group(procs[0], timeout=30)  # SIGTERM: the shutdown flushes the decision log
    with DecisionLogStore(f"sqlite:///{tmp / 'decisions.sqlite'}") as store:
        rows = pd.concat([b.to_pandas() for b in store.joined()], ignore_index=True)
    chats = rows[rows["source"] == "chat"]
    assert len(chats) == len(prompts) + 1 and chats["ok"].all()
    assert set(rows["router_version"]) == {"llmroute/1", "llmroute/2"}
    assert all(json.loads(a)[-1]["ok"] for a in chats["attempts"])
