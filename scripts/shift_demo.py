#!/usr/bin/env python3
"""Traffic shift demonstration: retrain from production and show, off-policy and with held-out truth,
whether the new router is better on the shifted traffic.

Steps (all local, no network; LLMRouter logs bundled in data/llmrouter are the ground truth):

1. Split the LLMRouter prompts: the held-out tasks (default: math, mbpp, human_eval) are never shown
   to the champion; the other tasks' training prompts train it. The champion is logged to MLflow,
   registered and promoted to ``champion``.
2. Start the replay server (every model answers with its recorded outcome) and the real llmroute
   service on 127.0.0.1 (champion from the registry, exploration on, the decision log in SQLite).
3. Send shifted production traffic through ``POST /v1/chat/completions``: the held-out tasks are now
   the majority. For every answer, ``POST /feedback`` with the ground-truth quality of the model
   that answered. Traffic comes in two windows: the first trains, the second evaluates.
4. ``retrain`` from the decision log's first window plus the champion's benchmark logs: the
   challenger, registered with lineage.
5. Off-policy evaluation (IPS, SNIPS, DM, DR) of challenger and champion on the second window, and the
   off-policy promotion gate.
6. Truth: (a) each router's true mean quality and cost on the second window's prompts (every model's
   outcome is known for them), (b) both routers on fresh held-out prompts with the shifted mix.

Prints the numbers, writes JSON and Markdown. Example:

    PYTHONPATH=src python scripts/shift_demo.py --home /tmp/shift-home --out docs/results/shift_demo
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
T0 = time.perf_counter()


def step(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Writes <out>.json and <out>.md.")
    p.add_argument("--data", type=Path, default=REPO / "data" / "llmrouter", help="folder with train.parquet and test.parquet")
    p.add_argument("--held-out-tasks", default="math,mbpp,human_eval", help="comma-separated tasks the champion never sees")
    p.add_argument("--production-requests", type=int, default=1200, help="distinct production prompts (before repeats)")
    p.add_argument("--train-requests", type=int, default=1500,
                   help="requests in the training window (its prompts, each at least once, repeated at random)")
    p.add_argument("--ope-requests", type=int, default=3000,
                   help="requests in the evaluation window (its own prompts, each at least once, repeated at random)")
    p.add_argument("--shift-share", type=float, default=0.6, help="share of production (and evaluation) traffic from held-out tasks")
    p.add_argument("--exploration", type=float, default=0.4, help="exploration share of the service (0-0.5)")
    p.add_argument("--exploration-mode", choices=("uniform", "runner_up"), default="uniform",
                   help="the service's exploration mode: every other eligible model, or the router's runner-ups")
    p.add_argument("--exploration-windows", choices=("both", "evaluation"), default="both",
                   help="windows served with --exploration-mode; 'evaluation': the training window keeps uniform "
                   "exploration, so the challenger is trained as in the uniform run and only the evaluation log changes")
    p.add_argument("--exploration-top-k", type=int, default=2, help="runner-up set size under --exploration-mode runner_up")
    p.add_argument("--ope-share", type=float, default=0.4, help="share of the distinct production prompts kept for the evaluation window")
    p.add_argument("--concurrency", type=int, default=4, help="parallel client requests")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--home", type=Path, default=None, help="LLMROUTE_HOME for the run (default: a new temporary folder)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "shift_demo", help="output path without suffix")
    return p.parse_args(argv)


# ---- data ----------------------------------------------------------------------------------------------
def load_pool(data: Path) -> pd.DataFrame:
    """Train and test logs together, one prompt text per prompt id (duplicated texts dropped)."""
    frames = []
    for split in ("train", "test"):
        df = pd.read_parquet(data / f"{split}.parquet")
        df["prompt_id"] = split + ":" + df["prompt_id"].astype(str)
        df["split"] = split
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    first = df.drop_duplicates("prompt_id")[["prompt_id", "prompt"]]
    keep = set(first.drop_duplicates("prompt")["prompt_id"])
    return df[df["prompt_id"].isin(keep)].reset_index(drop=True)


def split_pool(df: pd.DataFrame, held_out: set[str], args: argparse.Namespace) -> dict[str, list[str]]:
    rng = np.random.default_rng(args.seed)
    prompts = df.drop_duplicates("prompt_id")[["prompt_id", "task", "split"]]
    h = prompts[prompts["task"].isin(held_out)]["prompt_id"].to_numpy()
    o_train = prompts[~prompts["task"].isin(held_out) & (prompts["split"] == "train")]["prompt_id"].to_numpy()
    o_test = prompts[~prompts["task"].isin(held_out) & (prompts["split"] == "test")]["prompt_id"].to_numpy()
    h = rng.permutation(h)
    o_train = rng.permutation(o_train)
    n_h_prod = min(round(args.production_requests * args.shift_share), int(0.6 * len(h)))
    n_o_prod = round(n_h_prod * (1 - args.shift_share) / args.shift_share)
    h_prod, h_eval = h[:n_h_prod], h[n_h_prod:]
    o_prod, champion_train = o_train[:n_o_prod], o_train[n_o_prod:]
    n_o_eval = min(len(o_test), round(len(h_eval) * (1 - args.shift_share) / args.shift_share))
    o_eval = rng.permutation(o_test)[:n_o_eval]
    production = rng.permutation(np.concatenate([h_prod, o_prod]))
    return {"champion_train": list(champion_train), "production": list(production),
            "eval": list(np.concatenate([h_eval, o_eval]))}


def replay_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Logs for the replay server: a placeholder answer per (prompt, model) (LLMRouter keeps no answers),
    and the output tokens the LLMRouter importer assumed when it estimated costs, so that the service's
    cost (catalog prices x usage) equals the logged cost."""
    from llmroute.data.llmrouter import DEFAULT_ASSUMED_OUTPUT_TOKENS

    out = df.copy()
    out["response"] = "[recorded answer of " + out["model"].astype(str) + "]"
    out["output_tokens"] = DEFAULT_ASSUMED_OUTPUT_TOKENS
    return out


def repeat(prompts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """Every prompt once, then random repeats up to ``n`` requests, shuffled (production traffic repeats)."""
    extra = list(rng.choice(prompts, size=max(0, n - len(prompts)), replace=True)) if prompts else []
    return [str(p) for p in rng.permutation(np.array(list(prompts) + extra, dtype=object))]


# ---- servers -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A uvicorn server for an ASGI app in a background thread on 127.0.0.1."""

    def __init__(self, app: Any, name: str) -> None:
        import uvicorn

        self.port = free_port()
        self.name = name
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def wait_ready(url: str, timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"service at {url} not ready after {timeout_s} s")


def send_traffic(url: str, prompts: list[str], truth: dict[tuple[str, str], float], concurrency: int,
                 label: str) -> dict[str, int]:
    """Each prompt through /v1/chat/completions, then /feedback with the true quality of the answering model."""
    import httpx

    counts = {"sent": 0, "answered": 0, "feedback": 0, "failed": 0, "explored": 0}
    lock = threading.Lock()

    def one(client: httpx.Client, prompt: str) -> None:
        r = client.post(f"{url}/v1/chat/completions",
                        json={"model": "llmroute", "messages": [{"role": "user", "content": prompt}]})
        served = r.headers.get("X-LLMRoute-Model", "")
        decision_id = r.headers.get("X-LLMRoute-Decision-Id", "")
        ok = r.status_code == 200 and served and decision_id
        explored = ok and "exploration:" in r.json()["llmroute"]["decision"]["reason"]
        fb = False
        if ok:
            f = client.post(f"{url}/feedback", json={"decision_id": decision_id, "quality": truth[(prompt, served)]})
            fb = f.status_code < 300
        with lock:
            counts["sent"] += 1
            counts["answered"] += int(bool(ok))
            counts["failed"] += int(not ok)
            counts["feedback"] += int(fb)
            counts["explored"] += int(bool(explored))
            if counts["sent"] % 200 == 0 or counts["sent"] == len(prompts):
                step(f"  {label}: {counts['sent']}/{len(prompts)} requests ({counts['explored']} explored)")

    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda p: one(client, p), prompts))
    return counts


# ---- truth ---------------------------------------------------------------------------------------------
def true_value(picks: np.ndarray, prompts: list[str], q: dict[tuple[str, str], float],
               c: dict[tuple[str, str], float]) -> tuple[float, float]:
    qs = [q[(p, m)] for p, m in zip(prompts, picks)]
    cs = [c[(p, m)] for p, m in zip(prompts, picks)]
    return float(np.mean(qs)), float(np.mean(cs))


def route_eval(router: Any, prompts: list[str], cache: Path) -> np.ndarray:
    """The router's default-target choice for each prompt, unconstrained (as in the service)."""
    from llmroute.router import policy
    from llmroute.router.embedder import EmbeddingCache
    from llmroute.router.text import focus_text

    emb = EmbeddingCache(cache).encode(router.embedder, [focus_text(p) for p in prompts], progress=False)
    prepared = router.prepare(prompts, embeddings=emb)
    probs, costs = router.predict(prepared)
    knob, _ = router.knob_tables[router.default_rule].knob_for(router.default_target)
    idx, _ = policy.choose(router.default_rule, probs, costs, np.ones_like(probs, dtype=bool), knob)
    return np.array([router.models[i] for i in idx], dtype=object)


# ---- main ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="llmroute-shift-"))
    home.mkdir(parents=True, exist_ok=True)
    import os

    os.environ["LLMROUTE_HOME"] = str(home)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "LLMROUTE_TRACKING_URI"):
        os.environ.pop(var, None)

    from llmroute.artifacts.loading import load_router
    from llmroute.config import Settings
    from llmroute.data.decision_log.opening import open_decision_log
    from llmroute.data.decision_log.store import default_db_url
    from llmroute.data.importers import write_logs
    from llmroute.experiments.compare import compare_routers
    from llmroute.offpolicy.logged import logged_traffic
    from llmroute.offpolicy.policies import router_picks
    from llmroute.serving.app import create_app
    from llmroute.serving.replay import create_replay_app
    from llmroute.serving.settings import ServeSettings
    from llmroute.training.registry import OffPolicyGateOptions, promote
    from llmroute.training.retrain import retrain_from_production
    from llmroute.training.tracking import log_training_run
    from llmroute.training.train import TrainConfig, train_router

    settings = Settings(home=home)
    settings.ensure_home()
    cache = settings.cache_dir / "embeddings.sqlite"
    held_out = {t.strip() for t in args.held_out_tasks.split(",") if t.strip()}
    work = home / "shift_demo"
    work.mkdir(parents=True, exist_ok=True)

    step(f"LLMROUTE_HOME={home}; loading {args.data}")
    df = load_pool(args.data)
    unknown = held_out - set(df["task"].dropna())
    if unknown:
        print(f"error: unknown task(s) {sorted(unknown)}; tasks: {sorted(set(df['task'].dropna()))}", file=sys.stderr)
        return 2
    parts = split_pool(df, held_out, args)
    text = df.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    task_of = df.drop_duplicates("prompt_id").set_index("prompt_id")["task"]
    q_truth = {(p, m): float(v) for p, m, v in zip(df["prompt"], df["model"], df["quality"])}
    c_truth = {(p, m): float(v) for p, m, v in zip(df["prompt"], df["model"], df["cost_usd"])}
    champion_logs = work / "champion_train.parquet"
    write_logs(df[df["prompt_id"].isin(set(parts["champion_train"]))].drop(columns=["split"]), champion_logs)
    eval_logs = work / "eval_shifted.parquet"
    write_logs(df[df["prompt_id"].isin(set(parts["eval"]))].drop(columns=["split"]), eval_logs)
    prod_prompts = [str(text[i]) for i in parts["production"]]
    n_ope = round(len(prod_prompts) * args.ope_share)
    rng = np.random.default_rng(args.seed + 1)
    train_window = repeat(prod_prompts[: len(prod_prompts) - n_ope], args.train_requests, rng)
    ope_window = repeat(prod_prompts[len(prod_prompts) - n_ope:], args.ope_requests, rng)
    step(f"champion trains on {len(parts['champion_train'])} prompts (tasks other than {sorted(held_out)}); "
         f"production {len(prod_prompts)} requests ({sum(task_of[i] in held_out for i in parts['production'])} "
         f"from held-out tasks) sent as {len(train_window)} + {len(ope_window)} requests; evaluation "
         f"{len(parts['eval'])} fresh prompts")

    # 1. champion
    config = TrainConfig(embedder=settings.embedder, with_scorer=False, seed=args.seed)
    router, folder = train_router(champion_logs, settings, config, out_dir=home / "routers" / "champion")
    log_training_run(router, folder, champion_logs, None, settings)
    first = promote(settings, eval_logs, echo=lambda _: None)
    step(f"champion: {first.message}")

    # 2-3. serve it and send traffic
    db_url = default_db_url(home)
    replay = create_replay_app(replay_frame(df))
    with Server(replay, "replay") as rep:
        models = sorted(df["model"].unique())
        def serve(mode: str) -> Any:
            return ServeSettings(
                model="models:/llmroute@champion",
                provider_base_urls=dict.fromkeys(models, f"{rep.url}/v1"),
                decision_log_url=db_url,
                exploration_share=args.exploration,
                exploration_mode=mode,
                exploration_top_k=args.exploration_top_k,
                exploration_seed=args.seed,
                cascade_max_attempts=1,  # the logged action is then the answering model (no escalation)
                use_scorer=False,
                provider_retries=0,
            )

        train_mode = "uniform" if args.exploration_windows == "evaluation" else args.exploration_mode
        with Server(create_app(serve(train_mode), core=settings), "llmroute") as svc:
            wait_ready(svc.url)
            step(f"service on {svc.url} (exploration {args.exploration}, {train_mode}), replay provider on {rep.url}")
            c1 = send_traffic(svc.url, train_window, q_truth, args.concurrency, "training window")
            time.sleep(1.0)
            cutoff = datetime.now(UTC)
            time.sleep(1.0)
            if train_mode == args.exploration_mode:
                c2 = send_traffic(svc.url, ope_window, q_truth, args.concurrency, "evaluation window")
        if train_mode != args.exploration_mode:  # a second service (same log) for the evaluation window
            with Server(create_app(serve(args.exploration_mode), core=settings), "llmroute") as svc:
                wait_ready(svc.url)
                step(f"service on {svc.url} (exploration {args.exploration}, {args.exploration_mode}) for the evaluation window")
                c2 = send_traffic(svc.url, ope_window, q_truth, args.concurrency, "evaluation window")
        step(f"service stopped (decision log flushed): {c1} / {c2}")

    # 4. retrain
    step("retraining from the decision log (training window) + the champion's benchmark logs")
    result = retrain_from_production(db_url, settings, config, until=cutoff, benchmark_logs=[champion_logs],
                                     out_dir=home / "routers" / "challenger", echo=lambda m: step("  " + m))
    champion = load_router("models:/llmroute@champion", settings)
    challenger = load_router("models:/llmroute@challenger", settings)

    # 5. off-policy evaluation + gate on the evaluation window
    step("off-policy evaluation on the evaluation window, and the off-policy gate")
    gate = promote(settings, gate="offpolicy", echo=print,
                   offpolicy=OffPolicyGateOptions(db_url, since=cutoff, n_boot=args.bootstrap))
    report = gate.offpolicy
    step(f"gate: {gate.message}")

    # 6. truth
    store = open_decision_log(db_url)
    try:
        traffic = logged_traffic(store.joined(since=cutoff))
    finally:
        store.close()
    prompts = list(traffic.prompts)
    truth_window = {}
    for label, r in (("champion", champion), ("challenger", challenger)):
        picks = router_picks(r, traffic, cache).picks
        truth_window[label] = true_value(picks, prompts, q_truth, c_truth)
    eval_prompts = [str(text[i]) for i in parts["eval"]]
    eval_tasks = [task_of[i] for i in parts["eval"]]
    in_h = np.array([t in held_out for t in eval_tasks])
    truth_eval: dict[str, dict[str, float]] = {}
    for label, r in (("champion", champion), ("challenger", challenger)):
        picks = route_eval(r, eval_prompts, cache)
        qs = np.array([q_truth[(p, m)] for p, m in zip(eval_prompts, picks)])
        cs = np.array([c_truth[(p, m)] for p, m in zip(eval_prompts, picks)])
        truth_eval[label] = {"quality": float(qs.mean()), "cost_per_1k": float(cs.mean() * 1000),
                             "quality_held_out_tasks": float(qs[in_h].mean()),
                             "quality_seen_tasks": float(qs[~in_h].mean()),
                             "cost_per_1k_held_out_tasks": float(cs[in_h].mean() * 1000)}
    cmp = compare_routers(challenger, champion, eval_logs, cache)

    results = {
        "command": "PYTHONPATH=src python scripts/shift_demo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "held_out_tasks": sorted(held_out),
        "champion_train_prompts": len(parts["champion_train"]),
        "production_requests": {"training_window": c1, "evaluation_window": c2},
        "exploration_share": args.exploration,
        "exploration_mode": args.exploration_mode,
        "exploration_top_k": args.exploration_top_k,
        "exploration_windows": args.exploration_windows,
        "retrain_counts": result.production.counts(),
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        "offpolicy": report.to_dict(),
        "gate": {"promoted": gate.promoted, "message": gate.message},
        "truth_on_evaluation_window": {k: {"quality": v[0], "cost_per_1k": v[1] * 1000} for k, v in truth_window.items()},
        "truth_on_fresh_shifted_prompts": truth_eval,
        "fresh_prompts": {"n": len(eval_prompts), "held_out_task_share": float(in_h.mean())},
        "compare_on_fresh_shifted_prompts": {
            s.label: {"aiq": s.aiq, "realised_quality_at_default_target": s.realised_quality,
                      "cost_per_1k": s.cost_per_1k} for s in (cmp.champion, cmp.challenger) if s is not None},
        "seconds": round(time.perf_counter() - T0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    md = markdown(results, report)
    args.out.with_suffix(".md").write_text(md)
    print()
    print(md)
    step(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


def markdown(res: dict[str, Any], report: Any) -> str:
    def iv(x: Any, scale: float = 1.0, d: int = 3) -> str:
        return x.fmt(d, scale)

    tw, te = res["truth_on_evaluation_window"], res["truth_on_fresh_shifted_prompts"]
    rows = [
        "| | champion | challenger |",
        "|---|---|---|",
    ]
    for est in ("ips", "snips", "dm", "dr"):
        rows.append(f"| {est.upper()} quality | {iv(getattr(report.champion.quality, est))} | "
                    f"{iv(getattr(report.challenger.quality, est))} |")
    for est in ("ips", "dr"):
        rows.append(f"| {est.upper()} $ per 1k | {iv(getattr(report.champion.cost, est), 1000)} | "
                    f"{iv(getattr(report.challenger.cost, est), 1000)} |")
    rows += [
        (f"| matched decisions / ESS | {report.champion.quality.matches} / "
         f"{report.champion.quality.effective_sample_size:.0f} | {report.challenger.quality.matches} / "
         f"{report.challenger.quality.effective_sample_size:.0f} |"),
        (f"| decisions where the routers disagree / of those served the challenger's choice | "
         f"{report.disagreements} / {report.difference_evidence} | |"),
        f"| **truth** on the same window: quality | {tw['champion']['quality']:.3f} | {tw['challenger']['quality']:.3f} |",
        f"| **truth** on the same window: $ per 1k | {tw['champion']['cost_per_1k']:.3f} | {tw['challenger']['cost_per_1k']:.3f} |",
        (f"| champion realised (on-policy, {report.champion_realised_decisions} decisions) | "
         f"{iv(report.champion_realised_quality)} | |"),
        f"| fresh shifted prompts: quality (truth) | {te['champion']['quality']:.3f} | {te['challenger']['quality']:.3f} |",
        (f"|   held-out tasks / seen tasks | {te['champion']['quality_held_out_tasks']:.3f} / "
         f"{te['champion']['quality_seen_tasks']:.3f} | {te['challenger']['quality_held_out_tasks']:.3f} / "
         f"{te['challenger']['quality_seen_tasks']:.3f} |"),
        f"| fresh shifted prompts: $ per 1k (truth) | {te['champion']['cost_per_1k']:.3f} | {te['challenger']['cost_per_1k']:.3f} |",
    ]
    cmpd = res["compare_on_fresh_shifted_prompts"]
    aiqs = [v["aiq"] for v in cmpd.values()]
    rows.append(f"| fresh shifted prompts: AIQ | {aiqs[0]:.4f} | {aiqs[1]:.4f} |")
    mode = res.get("exploration_mode", "uniform")  # absent from results written before the mode existed
    if mode != "uniform":
        windows = "" if res.get("exploration_windows", "both") == "both" else ", evaluation window only"
        mode = f" ({mode}, top {res['exploration_top_k']}{windows})"
    else:
        mode = ""
    return "\n".join([
        (f"Held-out tasks: {', '.join(res['held_out_tasks'])}; exploration share {res['exploration_share']}{mode}; "
         f"OPE window {report.decisions_used} decisions ({report.explored} explored)."),
        "",
        *rows,
        "",
        (f"Paired DR difference (challenger - champion): quality {iv(report.dr_quality_difference)}, "
         f"$ per 1k {iv(report.dr_cost_difference, 1000)}."),
        f"Gate: {res['gate']['message']}",
        *(f"Warning: {w}" for w in report.warnings),
        "",
        f"Command: `{res['command']}` ({res['seconds']} s).",
    ])


if __name__ == "__main__":
    sys.exit(main())
