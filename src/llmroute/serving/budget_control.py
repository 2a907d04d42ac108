"""Spend control in the service: budget checks on /route and chat, the spend ledger, alerts, webhooks.

:class:`BudgetControl` is built by the app's lifespan when budgets are configured
(``LLMROUTE_SERVE_BUDGETS``: a budget file, :mod:`llmroute.budgets.spec`; budgets made with
``PUT /admin/budgets/{name}`` live in the decision-log database next to the file's).

The request path never waits on the database in the common case. Spend per budget window is cached
in-process and refreshed from the ledger every ``budget_refresh_s`` by a background task; a
process's own charges are added to its cache at once. Two exceptions, both for exactness:

* a ``block`` budget is read from the database on every check (when its cached spend is at or above
  ``budget_exact_share`` of the amount; default 0: always), so once its spend reaches the amount every
  process refuses (HTTP 429) -- overshoot is bounded by the cost of the requests already admitted
  and in flight;
* a chat request's realised cost (every cascade attempt or ensemble member) is booked in the
  database before the response is returned (streamed answers: as the stream ends), so a request
  that has answered is always in the ledger the next check reads. Charges are booked by group commit
  (:class:`llmroute.serving.ledger_writer.ChargeWriter`): one transaction at a time, carrying every
  charge that waited for it, so concurrent requests do not queue for the database's write lock.

Alerts (:mod:`llmroute.budgets.alerts`) are evaluated by the refresh task, claimed in the database
(each fires once per window across processes), and delivered as a log line, Prometheus counters and
a webhook POST from a queue with retries and exponential backoff (never on the request path).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.concurrency import run_in_threadpool

from llmroute.budgets import alerts as alerting
from llmroute.budgets.enforcement import BudgetStatus, Context, Verdict, combine
from llmroute.budgets.local_spend import LocalSpend
from llmroute.budgets.pacing import GainTracker, PacingController
from llmroute.budgets.spec import BudgetFileError, BudgetSpec, check_unique, load_budget_file, parse_budget
from llmroute.budgets.windows import Window, window_at
from llmroute.data.decision_log.ledger import BudgetLedger, Charge, spend_subjects
from llmroute.router import policy
from llmroute.router.decision import Candidate, Decision, QualityTarget
from llmroute.router.decision_rules import CONFIDENCE_RULE
from llmroute.router.router import Router
from llmroute.serving.decide import Routed, route_request
from llmroute.serving.errors import ServiceError
from llmroute.serving.ledger_writer import ChargeWriter
from llmroute.serving.schemas import RoutingOptions
from llmroute.serving.state import Services

log = logging.getLogger("llmroute.serving.budgets")
WEBHOOK_ATTEMPTS = 5
WEBHOOK_FIRST_BACKOFF_S = 0.5
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_QUEUE = 1000
RECENT_DECISIONS = 50_000


@dataclass(frozen=True)
class BudgetMetrics:
    """Prometheus series of the budgets (on the service's registry)."""

    spend: Gauge
    limit: Gauge
    share: Gauge
    forecast: Gauge
    alerts: Counter
    blocked: Counter
    paced: Counter
    file_ok: Gauge
    webhook_failures: Counter

    @classmethod
    def create(cls, reg: CollectorRegistry) -> BudgetMetrics:
        return cls(
            spend=Gauge("llmroute_budget_spend_usd", "Spend in the budget's current window.", ["budget"], registry=reg),
            limit=Gauge("llmroute_budget_limit_usd", "The budget's amount per window.", ["budget"], registry=reg),
            share=Gauge("llmroute_budget_share", "Spend as a share of the amount.", ["budget"], registry=reg),
            forecast=Gauge("llmroute_budget_forecast_usd", "Spend forecast at the window's end (spend rate so far; "
                           "NaN before 10% of the window).", ["budget"], registry=reg),
            alerts=Counter("llmroute_budget_alerts", "Budget alerts fired by this process.", ["budget", "alert"], registry=reg),
            blocked=Counter("llmroute_budget_blocked", "Requests refused (429) by a block budget.", ["budget"], registry=reg),
            paced=Counter("llmroute_budget_paced", "Decisions whose model pacing or downgrade changed.", ["budget"], registry=reg),
            file_ok=Gauge("llmroute_budget_file_ok", "0 after a budget file reload failed (the last good one is kept)", registry=reg),
            webhook_failures=Counter("llmroute_budget_webhook_failures", "Alert webhooks given up after every retry.",
                                     ["budget"], registry=reg),
        )


@dataclass(frozen=True)
class Subjects:
    """Who a request spends for."""

    tenant: str | None
    user: str | None
    key_id: str | None

    def keys(self) -> list[tuple[str, str]]:
        return spend_subjects(self.tenant, self.user, self.key_id)


@dataclass(frozen=True)
class Snapshot:
    window: Window
    spent_usd: float
    calls: int
    seq: int  # local charges with a higher sequence number are not in it


@dataclass(frozen=True)
class Admission:
    """A request the budgets let through: the options to route with and how to explain the decision."""

    opts: RoutingOptions
    verdict: Verdict
    subjects: Subjects
    base_target: QualityTarget | None = None

    def explain(self, decision: Decision, router: Router, original: RoutingOptions) -> Decision:
        """``decision`` with the budgets' notes in its reason and ``extra["budget"]``; says whether the budgets
        changed the pick (the model the request's own options would have got, from the decision's candidates)."""
        if not self.verdict.adjustments:
            return decision
        base = _unbudgeted_choice(decision, router, original, self.verdict)
        changed = base is not None and base != decision.model
        notes = "; ".join(self.verdict.notes)
        why = f"; budget: {notes}" + (f" -- chose {decision.model} instead of {base}" if changed else " (same pick)")
        info = {"notes": list(self.verdict.notes), "changed_pick": changed, "unbudgeted_model": base,
                "budgets": [a.budget for a in self.verdict.adjustments]}
        return dataclasses.replace(decision, reason=decision.reason + why, extra={**decision.extra, "budget": info})


def _capped_cost(candidate: Candidate) -> float:
    """The cost a ``max_cost_usd`` limit is checked against (see :mod:`llmroute.router.eligibility`)."""
    return candidate.cost_cap_usd if candidate.cost_cap_usd is not None else candidate.expected_cost_usd


def _unbudgeted_choice(decision: Decision, router: Router, original: RoutingOptions, verdict: Verdict) -> str | None:
    probs = np.array([c.probability for c in decision.candidates])
    costs = np.array([c.expected_cost_usd for c in decision.candidates])
    mask = np.array([c.eligible for c in decision.candidates])
    if verdict.max_cost_usd is not None:  # undo the budget's ceiling (not the request's own)
        own = original.max_cost_usd
        mask |= np.array([
            "> max_cost_usd" in (c.excluded_by or "") and (own is None or _capped_cost(c) <= own)
            for c in decision.candidates
        ])
    if not mask.any():
        return None
    if original.confidence is not None:
        rule, knob = CONFIDENCE_RULE, float(original.confidence)
    else:
        rule = original.rule or router.default_rule
        table = router.knob_tables.get(rule)
        if table is None:
            return None
        knob, _ = table.knob_for(original.quality_target() or router.default_target)
    idx, _ = policy.choose(rule, probs[None, :], costs[None, :], mask[None, :], knob)
    return decision.candidates[int(idx[0])].model if idx[0] >= 0 else None


class WebhookSender:
    """Delivers alert JSON to webhooks from a bounded queue: retried with exponential backoff, never awaited
    by a request (a full queue drops the alert with a log line and a counted failure)."""

    def __init__(self, metrics: BudgetMetrics, attempts: int = WEBHOOK_ATTEMPTS,
                 first_backoff_s: float | None = None) -> None:
        self.metrics = metrics
        self.attempts = attempts
        self.first_backoff_s = WEBHOOK_FIRST_BACKOFF_S if first_backoff_s is None else first_backoff_s
        self.queue: asyncio.Queue[tuple[str, alerting.Alert]] = asyncio.Queue(WEBHOOK_QUEUE)
        self.http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, url: str, alert: alerting.Alert) -> None:
        try:
            self.queue.put_nowait((url, alert))
        except asyncio.QueueFull:
            log.error("budget alert webhook queue is full; dropped %s alert of budget %r", alert.key, alert.budget)
            self.metrics.webhook_failures.labels(alert.budget).inc()

    async def run(self) -> None:
        """Deliver queued alerts (each in its own task, so a slow webhook never holds up the others)."""
        async with httpx.AsyncClient() as http:  # its own client: never the providers' connections
            self.http = http
            try:
                while True:
                    url, alert = await self.queue.get()
                    task = asyncio.get_running_loop().create_task(self._deliver(http, url, alert))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            finally:
                for task in list(self._tasks):
                    task.cancel()

    async def _deliver(self, http: httpx.AsyncClient, url: str, alert: alerting.Alert) -> None:
        delay = self.first_backoff_s
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                r = await http.post(url, json=alert.to_json(), timeout=WEBHOOK_TIMEOUT_S)
                if r.status_code < 300:
                    return
                problem = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                log.warning("budget alert webhook for %r failed (%s); retry %d in %.1f s", alert.budget, problem,
                            attempt, delay)
                await asyncio.sleep(delay)
                delay *= 2
        log.error("budget alert webhook for %r gave up after %d attempts (%s)", alert.budget, self.attempts, problem)
        self.metrics.webhook_failures.labels(alert.budget).inc()


class BudgetControl:
    """Budgets of one service process (see module docstring). Not thread-safe: use it on the event loop."""

    def __init__(self, ledger: BudgetLedger, metrics: BudgetMetrics, file: str | None, *,
                 refresh_s: float = 1.0, exact_share: float = 0.0, clock: Callable[[], datetime] | None = None) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.file = file
        self.refresh_s = refresh_s
        self.exact_share = exact_share
        self.clock = clock or (lambda: datetime.now(UTC))
        self.specs: dict[str, BudgetSpec] = {}
        self.sources: dict[str, str] = {}
        self._by_subject: dict[tuple[str, str], list[BudgetSpec]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._local = LocalSpend()  # this process's charges since the last refresh
        self._seq = 0
        self._file_mtime: float | None = None
        self._pacers: dict[tuple[int, str | None], PacingController] = {}
        self.gains: dict[str, GainTracker] = {}
        # pacing: each paced budget's trade-off (a position on the served router's knob table of a rule), per process
        self.levels: dict[tuple[str, str], float] = {}
        self._levels_router: int | None = None  # the router the levels belong to (a reload starts them afresh)
        self.recent: OrderedDict[str, Subjects] = OrderedDict()  # /route decision id -> subjects, for /feedback costs
        self.webhooks: WebhookSender | None = None
        self.last_error: str | None = None
        self.pending: set[asyncio.Task[bool]] = set()  # charges started and not yet booked (streamed answers)
        self.writer = ChargeWriter(ledger)  # charges are booked by group commit

    # -- setup ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, ledger: BudgetLedger, metrics: BudgetMetrics, file: str | None, **kw: Any) -> BudgetControl:
        """Load the budget file (raising :class:`BudgetFileError` on a bad one: the service must not start),
        store its budgets, read every stored budget and the spend of their windows. Blocking: run in a thread."""
        control = cls(ledger, metrics, file, **kw)
        if file:
            specs = load_budget_file(file)
            control._file_mtime = _mtime(file)
            ledger.sync_file_budgets([(s.name, s.to_dict()) for s in specs])
        control.reload_stored()
        control.refresh_spend()
        metrics.file_ok.set(1)
        return control

    def reload_stored(self) -> None:
        """Take the budgets stored in the database (blocking). A stored budget that no longer parses is skipped
        with an error in the log (the others still apply)."""
        specs: dict[str, BudgetSpec] = {}
        sources: dict[str, str] = {}
        for stored in self.ledger.list_budgets():
            try:
                specs[stored.name] = parse_budget(stored.spec, f"stored budget {stored.name!r}")
                sources[stored.name] = stored.source
            except BudgetFileError as exc:
                log.error("%s", exc)
        by_subject: dict[tuple[str, str], list[BudgetSpec]] = {}
        for s in specs.values():
            by_subject.setdefault((s.scope, s.subject), []).append(s)
        self.specs, self.sources, self._by_subject = specs, sources, by_subject
        for name in list(self.gains):
            if name not in specs:
                del self.gains[name]
        for key in list(self.levels):
            if key[0] not in specs:
                del self.levels[key]

    def refresh_spend(self) -> None:
        """Read the spend of every budget's current window from the ledger and take it (blocking; on the
        event loop's thread only when nothing else runs, e.g. at startup)."""
        self.apply_spend(*self.read_spend())

    def read_spend(self) -> tuple[dict[str, Snapshot], int]:
        """The ledger's spend in every budget's current window (blocking: run in a thread)."""
        now, seq = self.clock(), self._seq
        specs = list(self.specs.values())
        windows = [window_at(s.window, s.rolling, s.tz, now) for s in specs]
        got = self.ledger.spend([(s.scope, s.subject, w.start, w.end) for s, w in zip(specs, windows)])
        return {s.name: Snapshot(w, spent, calls, seq) for s, w, (spent, calls) in zip(specs, windows, got)}, seq

    def apply_spend(self, snapshots: dict[str, Snapshot], seq: int) -> None:
        """Take snapshots read by :meth:`read_spend` and forget the local charges they saw (on the event loop,
        where charges are added to the same :class:`LocalSpend`)."""
        self._snapshots = snapshots
        oldest = min((snap.seq for snap in snapshots.values()), default=seq)
        self._local.forget_through(oldest)

    def check_file(self) -> bool:
        """Hot reload: when the budget file changed, load it; a bad file keeps the last good budgets (logged,
        ``llmroute_budget_file_ok`` 0). Blocking. True when budgets were reloaded."""
        if not self.file:
            return False
        mtime = _mtime(self.file)
        if mtime == self._file_mtime:
            return False
        self._file_mtime = mtime
        try:
            specs = load_budget_file(self.file)
        except BudgetFileError as exc:
            self.last_error = str(exc)
            self.metrics.file_ok.set(0)
            log.error("budget file reload failed, keeping the last good budgets: %s", exc)
            return False
        self.ledger.sync_file_budgets([(s.name, s.to_dict()) for s in specs])
        self.metrics.file_ok.set(1)
        self.last_error = None
        log.info("budget file %s reloaded: %d budgets", self.file, len(specs))
        return True

    # -- status -----------------------------------------------------------------------------------
    def applicable(self, subjects: Subjects) -> list[BudgetSpec]:
        out: list[BudgetSpec] = []
        for k in subjects.keys():  # noqa: SIM118 - Subjects is not a dict: keys() lists its scopes
            out.extend(self._by_subject.get(k, ()))
        return out

    def status(self, spec: BudgetSpec, now: datetime | None = None) -> BudgetStatus:
        """The budget's spend from the cache (the last refresh plus this process's charges since)."""
        now = now or self.clock()
        window = window_at(spec.window, spec.rolling, spec.tz, now)
        snap = self._snapshots.get(spec.name)
        if snap is not None and snap.window != window:  # a new window began since the last refresh
            snap = None
        spent, calls, seq = (snap.spent_usd, snap.calls, snap.seq) if snap is not None else (0.0, 0, -1)
        local_spent, local_calls = self._local.since((spec.scope, spec.subject), seq, window.start, window.end)
        spent += local_spent
        calls += local_calls
        gain = self.gains[spec.name].gain if spec.name in self.gains else 1.0
        return BudgetStatus(spec, window, spent, calls, now, gain)

    def exact_status(self, spec: BudgetSpec, now: datetime) -> BudgetStatus:
        """The budget's spend read from the ledger now (blocking)."""
        window = window_at(spec.window, spec.rolling, spec.tz, now)
        seq = self._seq
        ((spent, calls),) = self.ledger.spend([(spec.scope, spec.subject, window.start, window.end)])
        self._snapshots[spec.name] = Snapshot(window, spent, calls, seq)
        return self.status(spec, now)

    # -- the request path -------------------------------------------------------------------------
    def admit(self, router: Router, opts: RoutingOptions, subjects: Subjects) -> Admission:
        """Check every budget of the request's subjects: raise a 429 :class:`ServiceError` when a block budget is
        spent, else the options adjusted by pacing (a lower target) and downgrade (a cost ceiling). Blocking
        (a block budget's exact read): called in the compute thread that routes the request, so the check
        costs no extra thread hop (:func:`route_with_budgets`)."""
        specs = self.applicable(subjects)
        if not specs:
            return Admission(opts, Verdict(), subjects)
        now = self.clock()
        rule = opts.rule or router.default_rule
        if self._levels_router != id(router):
            self.levels.clear()
            self._levels_router = id(router)
        statuses = []
        for spec in specs:
            st = self.status(spec, now)
            if spec.enforcement == "block" and st.share >= self.exact_share:
                st = self.exact_status(spec, now)
            elif spec.enforcement == "pace":
                st = dataclasses.replace(st, level=self.levels.get((spec.name, rule)))
            statuses.append(st)
        base = opts.quality_target() or router.default_target

        def pacer(spec: BudgetSpec) -> PacingController | None:
            if opts.confidence is not None or rule not in router.knob_tables:
                return None
            key = (id(router.knob_tables[rule]), spec.floor)
            if key not in self._pacers:
                self._pacers[key] = PacingController(router.knob_tables[rule], spec.floor_target())
            return self._pacers[key]

        verdict = combine(statuses, Context(base, pacer))
        for adj in verdict.adjustments:
            if adj.pace is not None and adj.pace.level is not None:
                self.levels[(adj.budget, rule)] = adj.pace.level  # the next request's pacing starts from here
        if verdict.blocked_by is not None:
            self._refuse(verdict.blocked_by)
        update: dict[str, Any] = {}
        if verdict.target is not None:
            update["target"] = verdict.target.value  # a float is an absolute target
            update["rule"] = rule
        if verdict.max_cost_usd is not None:
            own = opts.max_cost_usd
            update["max_cost_usd"] = verdict.max_cost_usd if own is None else min(own, verdict.max_cost_usd)
        return Admission(opts.model_copy(update=update) if update else opts, verdict, subjects, base)

    def _refuse(self, st: BudgetStatus) -> None:
        spec = st.spec
        self.metrics.blocked.labels(spec.name).inc()
        resets = st.resets_at
        when = f"; it resets at {resets.isoformat()}" if resets else "; rolling window: spend leaves it as it ages"
        headers = {"Retry-After": str(max(1, int((resets - st.now).total_seconds())))} if resets else {"Retry-After": "900"}
        raise ServiceError(
            429, "budget_exceeded",
            f"budget {spec.name!r} ({spec.scope} {spec.subject}) is spent: ${st.spent_usd:.6f} of "
            f"${spec.amount_usd:.2f} this {'rolling ' if spec.rolling else ''}{spec.window} window{when}",
            headers=headers, budget=spec.name, scope=spec.scope, subject=spec.subject, spent_usd=st.spent_usd,
            limit_usd=spec.amount_usd, window_start=st.window.start.isoformat(),
            resets_at=resets.isoformat() if resets else None,
        )

    def remember(self, decision_id: str, subjects: Subjects) -> None:
        """Who a /route decision spends for, so a later /feedback with its cost is booked to them."""
        self.recent[decision_id] = subjects
        while len(self.recent) > RECENT_DECISIONS:
            self.recent.popitem(last=False)

    async def charge(self, charge_id: str, cost_usd: float, subjects: Subjects, source: str,
                     admission: Admission | None = None, urgent: bool = True) -> bool:
        """Book realised spend in the ledger (by group commit in a thread, :class:`ChargeWriter`: returns once it
        is committed) and in this process's cache; False when this charge id was booked before (it is not
        counted twice). ``urgent=False``: no budget counts it now, so it may wait for others to share its
        transaction (up to the writer's ``linger_s``)."""
        now = self.clock()
        c = Charge(charge_id, float(cost_usd), now, source, subjects.tenant, subjects.user, subjects.key_id)
        booked = await self.writer.book(c, urgent)
        if booked:
            self._seq += 1
            self._local.add(self._seq, c.subjects(), c.cost_usd, now)
            if admission is not None:
                for adj in admission.verdict.adjustments:
                    if adj.pace is not None:
                        self.gains.setdefault(adj.budget, GainTracker()).add(adj.pace.table_cost_usd, c.cost_usd)
        return booked

    async def drain(self) -> None:
        """Wait for the charges still being booked (at shutdown, before the database closes)."""
        self.writer.hurry()
        if self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
        self.writer.close()

    # -- background -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Refresh budgets and spend, reload the file when it changed, fire alerts; every ``refresh_s``."""
        self.webhooks = WebhookSender(self.metrics)
        sender = asyncio.get_running_loop().create_task(self.webhooks.run())
        try:
            while True:
                await asyncio.sleep(self.refresh_s)
                try:
                    await self.refresh()
                except Exception:  # a database hiccup must not end the loop
                    log.exception("budget refresh failed; retrying in %.1f s", self.refresh_s)
        finally:
            sender.cancel()

    async def refresh(self) -> None:
        """One round of :meth:`run`: database work in a thread, cache updates on the event loop."""

        def read() -> tuple[dict[str, Snapshot], int]:
            self.check_file()
            self.reload_stored()
            return self.read_spend()

        self.apply_spend(*await run_in_threadpool(read))
        for alert, spec in await run_in_threadpool(self.fire_alerts):
            if spec.webhook and self.webhooks is not None:
                self.webhooks.send(spec.webhook, alert)

    def fire_alerts(self) -> list[tuple[alerting.Alert, BudgetSpec]]:
        """Update the budget gauges; claim and log every alert due (blocking). Returns the claimed alerts."""
        now = self.clock()
        out = []
        for spec in list(self.specs.values()):
            st = self.status(spec, now)
            fc = alerting.forecast(st)
            m = self.metrics
            m.spend.labels(spec.name).set(st.spent_usd)
            m.limit.labels(spec.name).set(spec.amount_usd)
            m.share.labels(spec.name).set(st.share)
            m.forecast.labels(spec.name).set(fc[0] if fc is not None else float("nan"))
            due = alerting.due(st)
            if not due:
                continue
            fired = self.ledger.fired_alerts(spec.name, st.window.start)
            for alert in due:
                if alert.key in fired or not self.ledger.claim_alert(spec.name, st.window.start, alert.key, now):
                    continue
                log.warning("budget alert: %s", alert.message)
                m.alerts.labels(spec.name, alert.key).inc()
                out.append((alert, spec))
        return out

    # -- admin ------------------------------------------------------------------------------------
    def put(self, name: str, body: dict[str, Any]) -> BudgetSpec:
        """Validate and store a budget made through the admin API (blocking); raises :class:`BudgetFileError`."""
        spec = parse_budget({**body, "name": name}, "request body")
        others = [s for n, s in self.specs.items() if n != name]
        check_unique([*others, spec], "request body")
        self.ledger.put_budget(name, spec.to_dict(), "api")
        self.reload_stored()
        self.refresh_spend()
        return spec

    def delete(self, name: str) -> bool:
        gone = self.ledger.delete_budget(name)
        self.reload_stored()
        return gone

    def describe(self, spec: BudgetSpec) -> dict[str, Any]:
        st = self.status(spec)
        fc = alerting.forecast(st)
        return {
            **spec.to_dict(), "source": self.sources.get(spec.name, "file"), "spent_usd": st.spent_usd,
            "calls": st.calls, "share": st.share, "window_start": st.window.start.isoformat(),
            "window_end": st.window.end.isoformat(), "resets_at": st.resets_at.isoformat() if st.resets_at else None,
            "forecast_usd": fc[0] if fc else None,
            "exceeds_at": fc[1].isoformat() if fc and fc[1] else None,
        }


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


def open_budget_control(file: str | None, engine: Any, registry: CollectorRegistry, refresh_s: float,
                        exact_share: float) -> BudgetControl:
    """Build the service's :class:`BudgetControl` on the decision-log ``engine`` (blocking)."""
    t0 = time.perf_counter()
    control = BudgetControl.open(BudgetLedger(engine), BudgetMetrics.create(registry), file, refresh_s=refresh_s,
                                 exact_share=exact_share)
    log.info("budgets: %d loaded in %.0f ms%s", len(control.specs), (time.perf_counter() - t0) * 1000,
             f" (file {Path(file)})" if file else "")
    return control


# ---- hooks for the route handlers ---------------------------------------------------------------
@dataclass(frozen=True)
class Admitted:
    """What a handler needs after the budget check: the options to route with, the decision rewrite, and the
    admission to charge against (None when the service runs without budgets)."""

    opts: RoutingOptions
    adjust: Callable[[Decision], Decision] | None = None
    admission: Admission | None = None


def admit_request(budgets: BudgetControl | None, router: Router, opts: RoutingOptions,
                  key_id: str | None) -> Admitted:
    """The budget check of one /route or chat request (raises the 429 of a spent block budget). Blocking."""
    if budgets is None:
        return Admitted(opts)
    admission = budgets.admit(router, opts, Subjects(opts.tenant, opts.user, key_id))
    if not admission.verdict.adjustments:
        return Admitted(admission.opts, None, admission)

    def adjust(decision: Decision) -> Decision:
        return admission.explain(decision, router, opts)

    return Admitted(admission.opts, adjust, admission)


def route_with_budgets(services: Services, router: Router, prompt: str, opts: RoutingOptions, source: str,
                       started: float | None, key_id: str | None, knob: float | None = None,
                       pinned: str | None = None) -> tuple[Admitted, Routed]:
    """:func:`admit_request` then :func:`llmroute.serving.decide.route_request` with the admitted options,
    in the calling (compute) thread: what /route and chat run on the compute pool. ``knob`` (a cascade
    operating point's) is passed through; it takes precedence over a paced target. ``pinned``: the model
    a chat request named (see :func:`~llmroute.serving.decide.route_request`), under the same budgets."""
    admitted = admit_request(services.budgets, router, opts, key_id)
    return admitted, route_request(
        services, router, prompt, admitted.opts, source, started, knob, admitted.adjust, pinned
    )


def charge_soon(budgets: BudgetControl | None, admitted: Admitted, charge_id: str, cost_usd: float,
                source: str = "chat", urgent: bool | None = None) -> asyncio.Task[bool] | None:
    """Start booking a chat request's realised cost (every attempt) on the event loop. The handler awaits the
    task before answering when a budget counts the request's spend (:func:`must_await_charge`, which also
    makes the charge urgent: booked at once, not lingering for company; a streamed answer's is booked as
    the stream ends; ``urgent`` given: the caller's own reading of it). A charge that fails is logged here,
    awaited or not."""
    if budgets is None or admitted.admission is None:
        return None
    task = asyncio.get_running_loop().create_task(
        budgets.charge(charge_id, cost_usd, admitted.admission.subjects, source, admitted.admission,
                       urgent=must_await_charge(budgets, admitted) if urgent is None else urgent))
    budgets.pending.add(task)  # the loop keeps only a weak reference to a task
    task.add_done_callback(budgets.pending.discard)
    task.add_done_callback(functools.partial(_log_failed_charge, charge_id))
    return task


def must_await_charge(budgets: BudgetControl | None, admitted: Admitted) -> bool:
    """Whether a chat answer waits for its charge to be committed: when a budget counts the request's spend
    now (its tenant's, user's, key's or a global one), so that no process admits a request on spend that
    was already answered for (a block budget's overshoot stays within the requests in flight). Without
    one the spend is booked all the same, in the background, in a transaction shared with the charges of
    the next ``ChargeWriter.linger_s`` (50 ms; drained at shutdown), and the answer does not wait for the
    ledger. A budget made later still sees the spend (it is in the ledger within ~50 ms of the answer); what
    a crash in that time loses is that spend in the ledger, not the outcome (the decision log's spool has
    its cost; the spool itself may lose its last 50 ms to a kill -9)."""
    if budgets is None or admitted.admission is None:
        return False
    return bool(budgets.applicable(admitted.admission.subjects))


def _log_failed_charge(charge_id: str, task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("budget charge %s failed: %s: %s", charge_id, type(exc).__name__, exc)
