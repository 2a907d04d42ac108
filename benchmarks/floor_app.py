"""The floor: the cheapest FastAPI endpoint, served by uvicorn exactly as ``llmroute serve`` serves
(``uvicorn.run`` defaults: uvloop and httptools when installed, access log off). ``POST /route``
reads the request's JSON body into a pydantic model (a ``prompt`` string, as ``/route`` takes it) and
answers a constant JSON document the size of a routing decision;
``GET /health`` answers ``{"status": "ok"}``. What ``benchmarks/route_vs_floor.py`` compares
``/route`` against: the cost of HTTP, ASGI and FastAPI alone.

    python benchmarks/floor_app.py --port 8001
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

# the shape and size of a /route answer for an 11-model router (about 2 kB)
DECISION = {
    "decision_id": "0" * 32,
    "model": "gpt-3.5-turbo-1106",
    "reason": "maximises P(meets target) - 12.5 x expected cost among eligible models",
    "cleared": True,
    "rule": "utility",
    "knob": 12.5,
    "router_version": "20261201-000000-00000000",
    "target": "95% of the best model",
    "task_hint": None,
    "explored": False,
    "experiment": None,
    "arm": None,
    "candidates": [
        {"model": f"model-{i}", "probability": 0.5 + i / 100, "expected_cost_usd": 0.0001 * i, "eligible": True,
         "excluded_by": None}
        for i in range(11)
    ],
}

app = FastAPI()


class Body(BaseModel):
    prompt: str


@app.post("/route")
async def route(body: Body) -> dict:
    return DECISION


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
