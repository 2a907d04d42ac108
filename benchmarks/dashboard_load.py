"""How long the dashboard takes to load on a large decision log.

Fills a SQLite decision log with N decisions spread over 30 days (default 5,000,000; 5 tenants,
11 models; half proxied with an outcome, a tenth with feedback) and its rollups, then times the page's
queries (``read_overview``) and the page's JSON through the app (``GET /dashboard/api/overview``) for
each window, all tenants and one tenant; for comparison, one aggregate straight over the raw
decisions table (what the page would cost without the rollups); and the write path's cost of keeping
the rollups (``DecisionLogStore.write_many`` with and without them).

    python benchmarks/dashboard_load.py                      # 5M decisions in a temporary folder
    python benchmarks/dashboard_load.py --decisions 200000   # a quick run
    python benchmarks/dashboard_load.py --db log.sqlite --keep   # keep (and reuse) the filled log

Rows are written with sqlite3's executemany (the fast path for the fill, not the service's path) and
carry three candidates and no prompt text or embedding (redacted-size rows); the rollups are computed
with a pandas group-by of the same measures (``--check`` compares them with ``rollup.rebuild``, the
store's own code, on a small log).
Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np


def _slots(ms: np.ndarray) -> np.ndarray:
    """``rollup.latency_slot`` on an array (checked against it on a sample in :func:`fill`)."""
    from llmroute.data.decision_log.rollup import LATENCY_BASE_MS, LATENCY_GROWTH, LATENCY_SLOTS

    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.ceil(np.log(ms / LATENCY_BASE_MS) / np.log(LATENCY_GROWTH) - 1e-9)
    return np.where(ms > LATENCY_BASE_MS, np.clip(k, 1, LATENCY_SLOTS - 1), 0).astype(np.int64)


def fill(url: str, path: Path, n: int, days: int, seed: int) -> None:
    """Rows with sqlite3's executemany; rollups with a pandas group-by of the same measures the store's
    rollup code adds (checked: :func:`check_rollup` compares with ``rollup.rebuild`` on small logs)."""
    import pandas as pd
    import sqlalchemy as sa

    from llmroute.data.decision_log import DecisionLogStore, tables
    from llmroute.data.decision_log.rollup import RESOLUTIONS, SUCCESS_THRESHOLD, latency_slot

    sample = np.geomspace(0.01, 1e6, 2000)
    assert [latency_slot(float(v)) for v in sample] == _slots(sample).tolist()
    rng = np.random.default_rng(seed)
    models = np.array([f"model-{k:02d}" for k in range(11)], dtype=object)
    prices = np.geomspace(0.0002, 0.03, len(models))
    tenants = np.array([f"tenant-{k}" for k in range(5)], dtype=object)
    end = int(time.time())
    begin = end - days * 86400
    store = DecisionLogStore(url)
    raw = store.engine.raw_connection()
    cur = raw.cursor()
    cur.execute("PRAGMA synchronous=OFF")
    d_sql = ("INSERT INTO decisions (decision_id, created_at, tenant, prompt_sha256, router_version, candidates, "
             "constraints, rule, knob, chosen_model, propensity, source, latency_ms, reason_kind, best_cost_usd, "
             "seed_cost_usd) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    o_sql = ("INSERT INTO outcomes (decision_id, model, ok, cost_usd, latency_ms, attempts, created_at) "
             "VALUES (?,?,?,?,?,?,?)")
    f_sql = "INSERT INTO feedback (feedback_id, decision_id, quality, created_at) VALUES (?,?,?,?)"
    cand_json = [json.dumps([{"model": models[k], "probability": 0.8, "expected_cost_usd": float(prices[k]),
                              "eligible": True, "excluded_by": None},
                             {"model": models[-1], "probability": 0.9, "expected_cost_usd": float(prices[-1]),
                              "eligible": True, "excluded_by": None},
                             {"model": models[5], "probability": 0.85, "expected_cost_usd": float(prices[5]),
                              "eligible": True, "excluded_by": None}]) for k in range(len(models))]
    attempts_json = [json.dumps([{"model": m, "ok": True}]) for m in models]
    frames = []
    lat_frames = []
    chunk = 250_000
    t0 = time.perf_counter()
    times = np.sort(rng.integers(begin, end, n))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m = hi - lo
        t = times[lo:hi]
        k = rng.integers(0, len(models), m)
        who = rng.integers(0, len(tenants), m)
        has_outcome = rng.random(m) < 0.5
        has_feedback = rng.random(m) < 0.1
        explored = rng.random(m) < 0.05
        route_ms = rng.lognormal(1.2, 0.4, m)
        call_ms = rng.lognormal(6.5, 0.6, m)
        quality = rng.random(m)
        ids = [uuid.uuid4().hex for _ in range(m)]
        stamps = [datetime.fromtimestamp(int(x), UTC).strftime("%Y-%m-%d %H:%M:%S.000000") for x in t]
        cur.executemany(d_sql, zip(
            ids, stamps, tenants[who], ["0" * 64] * m, ["llmroute/7"] * m, [cand_json[j] for j in k], ["{}"] * m,
            ["utility"] * m, [0.5] * m, models[k], [1.0] * m, np.where(has_outcome, "chat", "route"),
            route_ms.tolist(), np.where(explored, "explored", "router"), [float(prices[-1])] * m,
            [float(prices[5])] * m))
        oi = np.flatnonzero(has_outcome)
        cur.executemany(o_sql, zip([ids[j] for j in oi], models[k[oi]], [1] * len(oi),
                                   (prices[k[oi]] * 1.1).tolist(), call_ms[oi].tolist(),
                                   [attempts_json[j] for j in k[oi]], [stamps[j] for j in oi]))
        fi = np.flatnonzero(has_feedback)
        cur.executemany(f_sql, zip([uuid.uuid4().hex for _ in fi], [ids[j] for j in fi], quality[fi].tolist(),
                                   [stamps[j] for j in fi]))
        raw.commit()
        chosen = prices[k]
        base = pd.DataFrame({
            "tenant": tenants[who], "model": models[k], "decisions": 1, "explored": explored.astype(int),
            "expected_cost_usd": chosen, "best_n": 1, "best_cost_usd": prices[-1], "best_saving_usd": prices[-1] - chosen,
            "seed_n": 1, "seed_cost_usd": prices[5], "seed_saving_usd": prices[5] - chosen,
            "calls": has_outcome.astype(int), "attempts": has_outcome.astype(int),
            "cost_usd": np.where(has_outcome, chosen * 1.1, 0.0),
            "feedback": has_feedback.astype(int), "quality_sum": np.where(has_feedback, quality, 0.0),
            "met": (has_feedback & (quality >= SUCCESS_THRESHOLD)).astype(int),
        })
        for res in RESOLUTIONS:
            frames.append(base.assign(resolution_s=res, bucket=t - t % res)
                          .groupby(["resolution_s", "bucket", "tenant", "model"], as_index=False).sum())
            for kind, mask, ms in (("route", ~has_outcome, route_ms), ("call", has_outcome, call_ms)):
                lat = pd.DataFrame({"resolution_s": res, "bucket": (t - t % res)[mask], "tenant": tenants[who][mask],
                                    "kind": kind, "slot": _slots(ms[mask]), "n": 1})
                lat_frames.append(lat.groupby(["resolution_s", "bucket", "tenant", "kind", "slot"], as_index=False).sum())
        rate = hi / (time.perf_counter() - t0)
        print(f"  filled {hi:,}/{n:,} decisions ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    keys = ["resolution_s", "bucket", "tenant", "model"]
    rollup = pd.concat(frames).groupby(keys, as_index=False).sum()
    for col in tables.ROLLUP_COUNTS + tables.ROLLUP_SUMS:
        if col not in rollup:
            rollup[col] = 0
    lkeys = ["resolution_s", "bucket", "tenant", "kind", "slot"]
    latency = pd.concat(lat_frames).groupby(lkeys, as_index=False).sum()
    cols = keys + list(tables.ROLLUP_COUNTS + tables.ROLLUP_SUMS)
    cur.executemany(f"INSERT INTO rollup ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                    rollup[cols].astype(object).itertuples(index=False, name=None))
    cur.executemany("INSERT INTO rollup_latency (resolution_s, bucket, tenant, kind, slot, n) VALUES (?,?,?,?,?,?)",
                    latency[lkeys + ["n"]].astype(object).itertuples(index=False, name=None))
    raw.commit()
    cur.execute("ANALYZE")
    raw.commit()
    raw.close()
    with store.engine.connect() as conn:
        counts = {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                  for t in (tables.decisions, tables.outcomes, tables.feedback, tables.rollup, tables.rollup_latency)}
    store.close()
    print(f"fill: {n:,} decisions over {days} days in {time.perf_counter() - t0:.0f} s; rows {counts}; "
          f"file {path.stat().st_size / 2**30:.2f} GiB")


def check_rollup(url: str) -> None:
    """The filled rollups equal what ``rollup.rebuild`` computes from the rows (small logs only)."""
    import sqlalchemy as sa

    from llmroute.data.decision_log import DecisionLogStore, tables
    from llmroute.data.decision_log.rollup import rebuild

    def snapshot(store: DecisionLogStore) -> list[tuple]:
        with store.engine.connect() as conn:
            out = []
            for t in (tables.rollup, tables.rollup_latency):
                for row in conn.execute(sa.select(t).order_by(*t.primary_key.columns)):
                    out.append(tuple(round(v, 9) if isinstance(v, float) else v for v in row))
            return out

    with DecisionLogStore(url) as store:
        filled = snapshot(store)
        rebuild(store)
        assert snapshot(store) == filled, "the benchmark's fill and rollup.rebuild disagree"
    print(f"check: the fill's rollups equal rollup.rebuild's ({len(filled):,} rows)")


def timings(fn, repeats: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out[0], statistics.median(out), max(out)


def measure(url: str, repeats: int) -> None:
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from llmroute.data.decision_log.migrate import create_log_engine
    from llmroute.data.decision_log.overview import read_overview
    from llmroute.serving.app import create_app
    from llmroute.serving.settings import ServeSettings

    engine = create_log_engine(url)
    for window in ("30d", "day", "hour"):
        for tenant in (None, "tenant-3"):
            first, med, worst = timings(lambda: read_overview(engine, window, tenant), repeats)  # noqa: B023 - called at once
            print(f"read_overview window={window:<4} tenant={tenant or 'all':<8}  first {first * 1000:7.1f} ms  "
                  f"median {med * 1000:7.1f} ms  max {worst * 1000:7.1f} ms")
    since = (datetime.now(UTC) - timedelta(days=30)).replace(tzinfo=None)
    q = sa.text("SELECT tenant, chosen_model, count(*), sum(best_cost_usd) FROM decisions "
                "WHERE created_at >= :s GROUP BY tenant, chosen_model")
    with engine.connect() as conn:
        first, med, worst = timings(lambda: conn.execute(q, {"s": since}).all(), max(1, min(repeats, 2)))
    print(f"without rollups: one GROUP BY over the raw decisions (30 days)  first {first:.2f} s  median {med:.2f} s")
    engine.dispose()

    settings = ServeSettings(model="/nonexistent/router", decision_log_url=url, admin_api_keys=["bench"])
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        headers = {"Authorization": "Bearer bench"}
        for window in ("30d", "day", "hour"):
            def page() -> None:
                for path in ("/dashboard/api/overview", "/dashboard/api/ab", "/dashboard/api/registry"):
                    r = client.get(path, params={"window": window} if "registry" not in path else None, headers=headers)  # noqa: B023 - page() is timed in this iteration
                    assert r.status_code == 200, r.text
            first, med, worst = timings(page, repeats)
            print(f"page JSON over HTTP (overview + A/B + registry) window={window:<4}  first {first * 1000:7.1f} ms  "
                  f"median {med * 1000:7.1f} ms  max {worst * 1000:7.1f} ms")


def write_cost(records: int) -> None:
    """Seconds to write ``records`` decisions (+ outcomes) with and without the rollups, interleaved."""
    import contextlib
    from unittest import mock

    from llmroute.data.decision_log import DecisionLogStore, DecisionRecord, LoggedCandidate, OutcomeRecord

    def batch(k: int) -> list:
        now = datetime.now(UTC)
        out: list = []
        for i in range(500):
            did = f"{k}-{i}-{uuid.uuid4().hex}"
            out.append(DecisionRecord(did, now, "0" * 64, "r", "m1", (LoggedCandidate("m1", 0.9, 0.001, True),),
                                      tenant=f"t{i % 5}", best_cost_usd=0.01, latency_ms=3.0))
            out.append(OutcomeRecord(did, "m1", True, cost_usd=0.001, latency_ms=300.0, attempts=({"model": "m1", "ok": True},)))
        return out

    with tempfile.TemporaryDirectory() as tmp:
        results: dict[bool, list[float]] = {True: [], False: []}
        with DecisionLogStore(f"sqlite:///{tmp}/w.sqlite") as store:
            for k in range(max(2, records // 500)):
                for rolled in (True, False):
                    data = batch(2 * k + rolled)
                    off = mock.patch("llmroute.data.decision_log.rollup.roll_up_inserted", lambda *a, **kw: None)
                    with contextlib.nullcontext() if rolled else off:
                        t0 = time.perf_counter()
                        store.write_many(data)
                        results[rolled].append(time.perf_counter() - t0)
    per = {k: statistics.median(v) / 500 * 1e6 for k, v in results.items()}
    print(f"write path, 500 decisions + 500 outcomes a batch: {per[False]:.0f} µs a decision without rollups, "
          f"{per[True]:.0f} µs with (x{per[True] / per[False]:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=5_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--db", type=Path, help="SQLite file to fill (reused as is when it exists and --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the file; reuse it when it exists")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write-sample", type=int, default=20_000, help="decisions written to time the write path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare the fill's rollups with rollup.rebuild (slow)")
    args = ap.parse_args()
    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="llmroute-dashboard-")
        args.db = Path(tmp.name) / "decisions.sqlite"
    url = f"sqlite:///{args.db}"
    try:
        if not (args.keep and args.db.exists()):
            args.db.unlink(missing_ok=True)
            fill(url, args.db, args.decisions, args.days, args.seed)
        if args.check:
            check_rollup(url)
        measure(url, args.repeats)
        write_cost(args.write_sample)
    finally:
        if not args.keep:
            args.db.unlink(missing_ok=True)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
