"""CPU per record of the decision log's write path, step by step, on SQLite or PostgreSQL.

What a served ``/route`` decision costs the process after the request is answered: the spool's
journal thread encodes it as a JSON line (``encode``) and the ship thread writes batches to the
database with the dashboard's rollups (``write``: ``DecisionLogStore.write_many``). The ship thread
decodes lines (``decode``) only when it reads them back from the spool file (a replay after a
restart or an outage); otherwise it takes the records the journal just wrote from memory. Each step runs alone over the same records and is timed with the
process's CPU clock, so the numbers are ms of CPU a record. Records look like the service's: 11
candidates, a 256-float embedding, a ~600-character prompt (``--routerbench``: the bundled test
prompts), tenants and models spread over a few
rollup keys; ``--outcomes`` adds one outcome per decision (a proxied chat call).

    python benchmarks/decision_log_writer.py                            # SQLite in a temporary folder
    python benchmarks/decision_log_writer.py --batch 20,100,500 --records 4000
    python benchmarks/decision_log_writer.py --url postgresql://postgres@127.0.0.1:5432/bench
    python benchmarks/decision_log_writer.py --routerbench --batch 50  # the prompts serve_ab.py sends
    python benchmarks/decision_log_writer.py --profile 25               # cProfile of the write step

A ``--url`` database must be empty or a decision log (the run adds its rows to it). Run it on another
checkout with ``PYTHONPATH=OTHER/src`` for a before/after.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmroute.data.decision_log import DecisionLogStore, DecisionRecord, LoggedCandidate, OutcomeRecord, prompt_sha256
from llmroute.data.decision_log.spool import decode_record, encode_record

MODELS = [f"provider/model-{i}" for i in range(11)]
WORDS = ("route", "the", "prompt", "cheapest", "model", "that", "meets", "quality", "target", "python", "code")


def routerbench_prompts() -> list[str]:
    import pandas as pd

    root = Path(__file__).resolve().parents[1]
    return pd.read_parquet(root / "data" / "routerbench" / "test.parquet", columns=["prompt"])["prompt"].drop_duplicates().tolist()


def make_records(n: int, outcomes: bool, seed: int = 0, texts: list[str] | None = None,
                 ) -> list[DecisionRecord | OutcomeRecord]:
    rng = random.Random(seed)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    out: list[DecisionRecord | OutcomeRecord] = []
    for i in range(n):
        prompt = texts[(seed * n + i) % len(texts)] if texts else " ".join(rng.choice(WORDS) for _ in range(100))
        at = t0 + timedelta(milliseconds=3 * i)
        cands = tuple(LoggedCandidate(m, rng.random(), rng.random() / 1000, rng.random() > 0.2,
                                      None if rng.random() > 0.2 else "max_cost_usd") for m in MODELS)
        chosen = rng.choice(MODELS)
        d = DecisionRecord(
            decision_id=str(uuid.UUID(int=rng.getrandbits(128))), created_at=at, prompt=prompt,
            prompt_sha256=prompt_sha256(prompt), embedding=tuple(rng.random() for _ in range(256)),
            embedder="minilm-static", router_version="llmroute@7", chosen_model=chosen, candidates=cands,
            constraints={"max_cost_usd": None, "max_latency_ms": None, "allowed_models": None,
                         "excluded_models": [], "required_capabilities": [], "max_output_tokens": 0,
                         "data_policy": "any", "unavailable": []},
            tenant=rng.choice(("acme", "beta", None)), user="u1", target="95% of the best model",
            rule="threshold", knob=0.7, task_hint=None, source="chat" if outcomes else "route",
            latency_ms=rng.uniform(1, 5), reason_kind=rng.choice(("router", "router", "explored", "fallback")),
            best_cost_usd=0.002, seed_cost_usd=0.001, reason="threshold rule: cheapest model above 0.70",
        )
        if "target_value" in DecisionRecord.__dataclass_fields__:  # the exact target (older checkouts lack it)
            d = dataclasses.replace(d, target_value=0.955, target_kind="relative")
        out.append(d)
        if outcomes:
            out.append(OutcomeRecord(decision_id=d.decision_id, model=chosen, ok=True, created_at=at,
                                     input_tokens=120, output_tokens=80, cost_usd=0.0004, latency_ms=300.0,
                                     attempts=({"model": chosen, "ok": True, "latency_ms": 300.0, "cost_usd": 0.0004},)))
    return out


def cpu_ms_per_record(fn, n: int) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1000 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="Database URL (default: a new SQLite file in a temporary folder).")
    ap.add_argument("--records", type=int, default=3000, help="Decisions per batch size (default 3000).")
    ap.add_argument("--batch", default="1,20,100,500", help="Batch sizes of the write step, comma-separated.")
    ap.add_argument("--outcomes", action="store_true", help="Add one outcome per decision (proxied calls).")
    ap.add_argument("--routerbench", action="store_true",
                    help="Log the bundled RouterBench test prompts (what serve_ab.py sends) instead of ~600-character ones.")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="Print the N costliest functions (cProfile) of the write step at the largest batch.")
    ap.add_argument("--sort", default="cumulative", help="cProfile order of --profile: cumulative or tottime.")
    args = ap.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'log.sqlite'}"
        store = DecisionLogStore(url)
        print(f"database: {store.dialect}; {args.records} decisions{' + outcomes' if args.outcomes else ''} a batch size; "
              "ms of CPU a record", flush=True)
        texts = routerbench_prompts() if args.routerbench else None
        records = make_records(args.records, args.outcomes, seed=1, texts=texts)
        n = len(records)
        lines: list[bytes] = []
        decoded: list = []
        enc = cpu_ms_per_record(lambda: lines.extend(encode_record(r) for r in records), n)
        dec = cpu_ms_per_record(lambda: decoded.extend(decode_record(x) for x in lines), n)
        print(f"encode (journal thread) {enc:.4f}   decode (ship thread) {dec:.4f}", flush=True)
        for k, size in enumerate(batches):
            recs = make_records(args.records, args.outcomes, seed=2 + k, texts=texts)  # fresh keys: every row is inserted
            m = len(recs)
            chunks = [recs[i:i + size] for i in range(0, m, size)]
            profile = args.profile and size == max(batches)
            prof = cProfile.Profile() if profile else None

            def write(chunks=chunks, prof=prof) -> None:
                if prof is not None:
                    prof.enable()
                for c in chunks:
                    store.write_many(c)
                if prof is not None:
                    prof.disable()

            start = time.perf_counter()
            ms = cpu_ms_per_record(write, m)
            wall = (time.perf_counter() - start) * 1000 / m
            print(f"write, batches of {size:>4}: {ms:.4f} ms CPU a record ({wall:.4f} ms wall)", flush=True)
            if prof is not None:
                pstats.Stats(prof, stream=sys.stdout).sort_stats(args.sort).print_stats(args.profile)
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
