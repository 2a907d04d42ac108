"""The OpenAI-compatible proxy beside LiteLLM's proxy, both in front of the same replay server
(``llmroute replay-server``), interleaved round by round at concurrency 1, 8 and 32.

    python benchmarks/proxy_vs_litellm.py --router ~/.llmroute/routers/<version> --litellm /tmp/litellm-venv/bin/litellm

LiteLLM runs from its own virtualenv (it pins versions of FastAPI, pydantic and httpx that need not
match llmroute's), pinned to a known-good release and offline with its bundled cost map:

    python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install "litellm[proxy]==1.80.17"

Targets, each hit with the same chat requests (RouterBench test prompts, which the replay server
answers with a recorded answer):

- ``direct``: the replay server itself (the backend's own latency, subtracted from the others);
- ``llmroute-1``: ``llmroute serve`` with one attempt and no answer scorer (route, call, answer);
- ``llmroute-1-httpx`` (only with ``--targets``): the same with provider calls through httpx;
- ``llmroute-1-nolog`` (only with ``--targets``): the same with the decision log off (and with it the spend
  ledger: no budgets), to see what logging every decision and booking every cost adds;
- ``llmroute``: ``llmroute serve`` with its defaults (the cascade may call a second model);
- ``litellm``: LiteLLM's proxy forwarding to one model (``--litellm-model``), no database, no auth;
- ``llmroute-1-base`` (only with ``--baseline SRC``): ``llmroute-1`` run from another checkout's ``src``
  folder (e.g. the code before a change), in the same rounds.

Added latency = a proxy's percentile minus the direct percentile of the same round and concurrency.
Prints per round and a summary (median [min-max] over rounds) of added p50/p99, the ratios
llmroute / LiteLLM, throughput, and each proxy's CPU per request and memory. Numbers depend on the
machine and its load (printed with every round): compare ratios from one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import LAUNCH, ROOT, LevelResult, Server, answered_prompts, free_port, run_level, spread


def ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"choices"' in body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", type=Path, required=True, help="Saved router folder.")
    ap.add_argument("--litellm", default="/tmp/litellm-venv/bin/litellm", help="The litellm executable (its own venv).")
    ap.add_argument("--litellm-model", default="gpt-3.5-turbo-1106", help="The model LiteLLM forwards to.")
    ap.add_argument("--logs", type=Path, default=ROOT / "data" / "routerbench" / "test.parquet")
    ap.add_argument("--requests", type=int, default=400, help="Requests per target, level and round.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--targets", default="direct,llmroute-1,llmroute,litellm", help="Which targets to run.")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="Another checkout's src folder: adds the target llmroute-1-base (llmroute-1 from that code).")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    wanted = args.targets.split(",") + (["llmroute-1-base"] if args.baseline else [])
    if "llmroute-1-base" in wanted and args.baseline is None:
        raise SystemExit("the target llmroute-1-base needs --baseline SRC (another checkout's src folder)")
    tmp = Path(tempfile.mkdtemp(prefix="llmroute-proxy-bench-"))
    home = os.environ.get("LLMROUTE_HOME") or str(tmp / "home")
    models = json.loads((args.router / "router.json").read_text())["models"]
    prompts = answered_prompts(args.logs, args.litellm_model)
    texts = [prompts[i % len(prompts)] for i in range(args.requests)]
    servers: dict[str, Server] = {}
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, "LLMROUTE_HOME": home}
        servers["direct"] = Server.start(
            "replay", [sys.executable, "-c", LAUNCH, "replay-server", "--logs", str(args.logs), "--port", str(port),
                       "--unknown-prompt", "most_common"],  # a model without this prompt's answer still answers
            port, env, ready_path="/v1/models",
        )
        serve_env = {
            **env, "LLMROUTE_SERVE_API_KEYS": "[]",
            "LLMROUTE_SERVE_PROVIDER_BASE_URLS": json.dumps(dict.fromkeys(models, base)),
            "LLMROUTE_SERVE_DECISION_LOG_URL": os.environ.get(
                "LLMROUTE_SERVE_DECISION_LOG_URL", f"sqlite:///{tmp / 'decisions.sqlite'}"
            ),
        }
        one = {"LLMROUTE_SERVE_CASCADE_MAX_ATTEMPTS": "1", "LLMROUTE_SERVE_USE_SCORER": "false"}
        variants = {
            "llmroute-1": one,
            "llmroute-1-httpx": {**one, "LLMROUTE_SERVE_PROVIDER_HTTP": "httpx"},  # only when asked for
            "llmroute-1-nolog": {**one, "LLMROUTE_SERVE_DECISION_LOG_URL": "off"},  # only when asked for
            "llmroute": {},
            "llmroute-1-base": {**one, "PYTHONPATH": str(args.baseline.resolve()) if args.baseline else ""},
        }
        for name, extra in variants.items():
            if name in wanted:
                p = free_port()
                servers[name] = Server.start(
                    name, [sys.executable, "-c", LAUNCH, "serve", "--model", str(args.router), "--port", str(p),
                           "--log-level", "warning"],
                    p, {**serve_env, "LLMROUTE_SERVE_DECISION_LOG_URL":
                        serve_env["LLMROUTE_SERVE_DECISION_LOG_URL"].replace(".sqlite", f"-{name}.sqlite"), **extra},
                    ready_path="/ready",
                )
        if "litellm" in wanted:
            p = free_port()
            config = tmp / "litellm.yaml"
            config.write_text(json.dumps({
                "model_list": [{"model_name": args.litellm_model, "litellm_params": {
                    "model": f"openai/{args.litellm_model}", "api_base": base, "api_key": "sk-replay"}}],
                "litellm_settings": {"telemetry": False, "drop_params": True},
            }))
            lenv = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            lenv.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"})
            servers["litellm"] = Server.start(
                "litellm", [args.litellm, "--config", str(config), "--port", str(p), "--host", "127.0.0.1"],
                p, lenv, ready_path="/health/liveliness",
            )
        order = [t for t in ("direct", "llmroute-1", "llmroute-1-base", "llmroute-1-httpx", "llmroute-1-nolog",
                             "llmroute", "litellm")
                 if t in servers]
        version = "?"
        if "litellm" in servers:
            pip = Path(args.litellm).with_name("pip")
            version = os.popen(f"{pip} show litellm 2>/dev/null | grep -i ^version").read().strip() or "?"
        print(f"targets {', '.join(order)}; LiteLLM {version}; cpus {os.cpu_count()}; RSS (the server process, "
              "then with its child processes: llmroute's reload-check server) "
              + ", ".join(f"{n} {servers[n].rss_own():.0f}/{servers[n].rss():.0f} MiB" for n in order), flush=True)

        def bodies(target: str) -> list[bytes]:
            model = "llmroute" if target.startswith("llmroute") else args.litellm_model
            return [json.dumps({"model": model, "messages": [{"role": "user", "content": t}]}).encode() for t in texts]

        path = {"direct": "/v1/chat/completions", "litellm": "/v1/chat/completions"}
        for t in order:  # warm-up
            run_level(servers[t], path.get(t, "/v1/chat/completions"), bodies(t)[:50], 4, ok)
        results: dict[tuple[str, int], list[LevelResult]] = {}
        for r in range(args.rounds):
            for c in levels:
                round_order = order if (r + c) % 2 == 0 else order[::-1]
                for t in round_order:
                    res = run_level(servers[t], "/v1/chat/completions", bodies(t), c, ok)
                    if res.errors:
                        raise SystemExit(f"{t}: {res.errors} bad answers at concurrency {c}: {res.first_error}")
                    results.setdefault((t, c), []).append(res)
                d = results[("direct", c)][-1]
                line = [f"round {r + 1} c={c:>2}: direct p50 {d.quantile(50):.1f} p99 {d.quantile(99):.1f} ms"]
                for t in order[1:]:
                    x = results[(t, c)][-1]
                    line.append(f"{t} +{x.quantile(50) - d.quantile(50):.1f}/+{x.quantile(99) - d.quantile(99):.1f} ms "
                                f"{x.throughput:.0f} req/s {x.cpu_ms_per_request:.2f} ms CPU")
                print("; ".join(line) + f"; load {os.getloadavg()[0]:.2f}", flush=True)
        print(f"\nsummary over {args.rounds} rounds of {args.requests} requests (median [min-max]); RSS (process/with "
              "children) " + ", ".join(f"{n} {servers[n].rss_own():.0f}/{servers[n].rss():.0f} MiB" for n in order))
        for c in levels:
            ds = results[("direct", c)]
            added = {t: ([x.quantile(50) - d.quantile(50) for x, d in zip(results[(t, c)], ds)],
                         [x.quantile(99) - d.quantile(99) for x, d in zip(results[(t, c)], ds)]) for t in order[1:]}
            for t in order[1:]:
                xs = results[(t, c)]
                print(f"c={c:>2} {t:>10}: added p50 {spread(added[t][0], '{:.1f}')} ms, p99 {spread(added[t][1], '{:.1f}')} ms; "
                      f"throughput {spread([x.throughput for x in xs], '{:.0f}')} req/s; CPU/request "
                      f"{spread([x.cpu_ms_per_request for x in xs])} ms")
            if "litellm" in added:
                for t in (x for x in order[1:] if x.startswith("llmroute")):
                    r50 = [a / b for a, b in zip(added[t][0], added["litellm"][0])]
                    r99 = [a / b for a, b in zip(added[t][1], added["litellm"][1])]
                    print(f"c={c:>2} {t} / litellm added latency: p50 {spread(r50)}x, p99 {spread(r99)}x")
            if "llmroute-1-base" in added:
                r50 = [a / b for a, b in zip(added["llmroute-1"][0], added["llmroute-1-base"][0])]
                r99 = [a / b for a, b in zip(added["llmroute-1"][1], added["llmroute-1-base"][1])]
                cpu = [a.cpu_ms_per_request / b.cpu_ms_per_request
                       for a, b in zip(results[("llmroute-1", c)], results[("llmroute-1-base", c)])]
                print(f"c={c:>2} llmroute-1 / llmroute-1-base: added p50 {spread(r50)}x, p99 {spread(r99)}x, "
                      f"CPU/request {spread(cpu)}x")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
