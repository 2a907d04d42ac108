"""What a serving process carries (issue 19, memory per process): `llmroute serve` with a saved router that
has an answer scorer loads, routes and proxies a chat call (scored by the scorer) without importing the
libraries only training, evaluation and export need; and the saved router decides exactly as it did when
its LightGBM models were loaded with the LightGBM package."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from llmroute.config import Settings
from tests.processes import free_port
from tests.serving.servers import LiveServer
from tests.tiers import slow_fixture

REPO = Path(__file__).resolve().parents[2]

# what a serving process must not import: each costs memory and start-up and buys the service nothing
NOT_SERVED = ("pandas", "pyarrow", "sklearn", "scipy", "lightgbm", "narwhals", "joblib", "torch",
              "sentence_transformers", "transformers", "dask", "distributed", "mlflow")

# `llmroute serve` itself (the whole command line), writing sys.modules to $MODULES_OUT at exit
WRAPPER = (
    "import atexit, json, os, sys\n"
    "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write(json.dumps(sorted(sys.modules))))\n"
    "from llmroute.cli import app\n"
    "app(sys.argv[1:], prog_name='llmroute')\n"
)


@dataclass(frozen=True)
class Served:
    folder: Path
    home: Path
    logs: object  # the training rows (a pandas DataFrame)


@pytest.fixture(scope="module")
@slow_fixture("trains a static-embedder router with its answer scorer")
def served(tmp_path_factory: pytest.TempPathFactory, static_embedders_dir: Path) -> Served:
    """A router with the default (static) embedder and an answer scorer, trained on 150 RouterBench prompts."""
    from threadpoolctl import threadpool_limits

    from llmroute.data.importers import read_logs, write_logs
    from llmroute.training.train import TrainConfig, train_router

    tmp = tmp_path_factory.mktemp("served-router")
    home = tmp / "home"
    shutil.copytree(static_embedders_dir, home / "embedders")
    df = read_logs(REPO / "data" / "routerbench" / "train.parquet")
    ids = sorted(df["prompt_id"].unique())[:150]
    logs = df[df["prompt_id"].isin(ids)].reset_index(drop=True)
    write_logs(logs, tmp / "logs.parquet")
    with threadpool_limits(limits=1, user_api="openmp"):
        _, folder = train_router(tmp / "logs.parquet", Settings(home=home),
                                 TrainConfig(embedder="minilm-static", with_scorer=True), out_dir=tmp / "router")
    assert (folder / "scorer" / "scorer_lightgbm.txt").is_file()
    return Served(folder, home, logs)


def test_serve_routes_and_proxies_without_the_training_libraries(served: Served, tmp_path: Path) -> None:
    """A fresh `llmroute serve` process (service defaults: decision log, answer scorer, reload check server)
    loads the router, answers POST /route and a chat completion through the cascade, and at exit has
    imported none of :data:`NOT_SERVED`."""
    import pandas as pd

    from llmroute.serving.replay import create_replay_app

    logs = served.logs
    assert isinstance(logs, pd.DataFrame)
    backend = LiveServer(create_replay_app(logs, unknown_prompt="most_common")).start()
    port = free_port()
    modules_out = tmp_path / "modules.json"
    env = {**os.environ, "LLMROUTE_HOME": str(served.home), "MODULES_OUT": str(modules_out),
           "LLMROUTE_SERVE_API_KEYS": "[]", "LLMROUTE_SERVE_DECISION_LOG_URL": f"sqlite:///{tmp_path / 'log.sqlite'}"}
    env.pop("LLMROUTE_SERVE_USE_SCORER", None)
    err = tmp_path / "serve.stderr"
    with err.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, "serve", "--model", str(served.folder), "--port", str(port),
             "--default-base-url", backend.url + "/v1", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=err_file,
        )
    url = f"http://127.0.0.1:{port}"
    prompt = str(logs["prompt"].iloc[0])
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, err.read_text()[-3000:]
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "llmroute serve was not ready within 240 s"
            time.sleep(0.2)
        routed = httpx.post(url + "/route", json={"prompt": prompt}, timeout=60)
        assert routed.status_code == 200, routed.text
        assert routed.json()["model"] in json.loads((served.folder / "router.json").read_text())["models"]
        chat = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "llmroute", "messages": [{"role": "user", "content": prompt}],
        })
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"]
        assert httpx.get(url + "/metrics", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn shuts down, Python exits normally and atexit writes the modules
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            backend.stop()
    assert modules_out.is_file(), err.read_text()[-3000:]
    modules = json.loads(modules_out.read_text())
    assert "llmroute.router.native_booster" in modules and "llmroute.router.answer_scorer" in modules
    assert "uvicorn" in modules and "sqlalchemy" in modules  # the probe sees the service's imports
    offenders = sorted({m.split(".")[0] for m in modules} & set(NOT_SERVED))
    assert offenders == [], f"llmroute serve imported {offenders}"


def test_the_saved_router_decides_as_with_the_lightgbm_package(served: Served) -> None:
    """Routing held-out prompts with the loaded router (NativeBooster) and with the same model files loaded
    by ``lightgbm.Booster``: the same probabilities bit for bit, hence the same decisions; the answer scorer
    likewise."""
    import dataclasses

    import lightgbm as lgb

    from llmroute.artifacts.loading import load_served
    from llmroute.data.importers import read_logs
    from llmroute.router.decision import RouteQuery
    from llmroute.router.native_booster import NativeBooster

    router, scorer = load_served(served.folder, Settings(home=served.home), True)
    assert scorer is not None
    assert all(isinstance(b, NativeBooster) for b in router.quality.boosters_)
    assert isinstance(scorer.booster_, NativeBooster)
    test = read_logs(REPO / "data" / "routerbench" / "test.parquet")
    prompts = test["prompt"].drop_duplicates().head(120).tolist()

    package_quality = type(router.quality).load(served.folder)
    package_quality.boosters_ = [lgb.Booster(model_file=str(served.folder / f"quality_lightgbm_{i}.txt"))
                                 for i in range(len(router.quality.boosters_))]
    package = dataclasses.replace(router, quality=package_quality)

    queries = [RouteQuery(p) for p in prompts]
    ours = [router.route(p) for p in prompts] + router.route_many(queries)
    theirs = [package.route(p) for p in prompts] + package.route_many(queries)
    assert ours == theirs  # every candidate's probability and cost, the choice and the reason
    assert len({d.model for d in ours}) > 1  # the comparison covers more than one choice

    answers = test.drop_duplicates("prompt").head(60)
    args = (answers["prompt"].tolist(), answers["response"].fillna("").tolist(), answers["model"].tolist())
    got = scorer.score(*args)
    scorer.booster_ = lgb.Booster(model_file=str(served.folder / "scorer" / "scorer_lightgbm.txt"))
    assert np.array_equal(got, scorer.score(*args))
