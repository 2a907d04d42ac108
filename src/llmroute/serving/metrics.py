"""Prometheus metrics of one app instance, on its own CollectorRegistry (never the global one)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from llmroute.data.decision_log.spool import SpoolStats

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

_LOG_GAUGES = {
    "enabled": "1 when decisions are logged, 0 when the decision log is off.",
    "submitted": "Records queued for the decision log since start.",
    "written": "Records written to the decision log since start.",
    "dropped": "Records refused since start (memory bound reached while disk and database refused writes, or "
    "writer closed); their requests were answered 503.",
    "failed": "Records the database refused as bad data since start (kept in the spool's rejected.jsonl).",
    "pending": "Records accepted but not yet in the database (spooled, or held in memory).",
    "replayed": "Records left in the spool by earlier processes and written since start.",
    "held_in_memory": "Records held in memory because the spool's disk refuses writes.",
    "spool_bytes": "Spooled bytes not yet written to the database.",
    "degraded": "1 while the database or the spool's disk refuses writes (records are kept and retried).",
}

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class ServiceMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    routed: Counter
    explored: Counter
    cost: Counter
    escalations: Counter
    provider_errors: Counter
    decision_log: dict[str, Gauge]  # SpoolStats field -> gauge, plus "enabled"
    data_policy_blocked: Counter
    breaker_trips: Counter
    breaker_state: Gauge
    model_available: Gauge
    data_policy_decisions: Counter
    reloads: Counter
    provider_config_errors: Counter

    @classmethod
    def create(cls) -> ServiceMetrics:
        reg = CollectorRegistry(auto_describe=True)
        return cls(
            registry=reg,
            requests=Counter(
                "llmroute_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"], registry=reg
            ),
            latency=Histogram(
                "llmroute_request_latency_seconds", "HTTP request latency.", ["endpoint"],
                buckets=_LATENCY_BUCKETS, registry=reg,
            ),
            routed=Counter("llmroute_routed", "Routing decisions by chosen model.", ["model"], registry=reg),
            explored=Counter(
                "llmroute_explored", "Decisions served by an explored model (not the router's choice), by model.",
                ["model"], registry=reg,
            ),
            cost=Counter("llmroute_cost_usd", "USD spent on provider calls, by model.", ["model"], registry=reg),
            escalations=Counter(
                "llmroute_escalations", "Cascade escalations, by reason.", ["reason"], registry=reg
            ),
            provider_errors=Counter(
                "llmroute_provider_errors", "Failed provider calls, by model and kind.", ["model", "kind"],
                registry=reg,
            ),
            reloads=Counter(
                "llmroute_reloads", "Router reloads by result (ok, or rejected: the old router stayed).", ["result"],
                registry=reg,
            ),
            provider_config_errors=Counter(
                "llmroute_provider_config_errors",
                "Provider calls refused with 401/403 (a configuration error: key or permissions), by model.",
                ["model"], registry=reg,
            ),
            decision_log={
                name: Gauge(f"llmroute_decision_log_{name}", help_, registry=reg)
                for name, help_ in _LOG_GAUGES.items()
            },
            data_policy_blocked=Counter(
                "llmroute_data_policy_blocked", "Provider calls refused at the last gate because the request's "
                "data policy forbids the model (should stay 0: routing excludes such models), by model.",
                ["model"], registry=reg,
            ),
            breaker_trips=Counter(
                "llmroute_circuit_breaker_trips", "Times a model's circuit breaker opened, by model.", ["model"],
                registry=reg,
            ),
            breaker_state=Gauge(
                "llmroute_circuit_breaker_state", "Circuit breaker per model: 0 closed, 1 half-open, 2 open.",
                ["model"], registry=reg,
            ),
            model_available=Gauge(
                "llmroute_model_available", "1 when the model can take a call now (breaker not open, rate "
                "limit not spent), else 0.", ["model"], registry=reg,
            ),
            data_policy_decisions=Counter(
                "llmroute_data_policy_decisions", "Routing decisions by the data policy in force.", ["policy"],
                registry=reg,
            ),
        )

    def observe_health(self, snapshot: dict[str, dict[str, object]]) -> None:
        """Set the per-model breaker and availability gauges from :meth:`ProviderHealth.snapshot`."""
        codes = {"closed": 0, "half_open": 1, "open": 2}
        for model, info in snapshot.items():
            breaker = info.get("breaker")
            state = breaker.get("state", "closed") if isinstance(breaker, dict) else "closed"
            self.breaker_state.labels(model).set(codes.get(str(state), 0))
            self.model_available.labels(model).set(1 if info.get("available") else 0)

    def observe_decision_log(self, stats: SpoolStats | None) -> None:
        """Set the decision-log gauges from the writer's counters (None: logging is off)."""
        self.decision_log["enabled"].set(0 if stats is None else 1)
        if stats is not None:
            for f in fields(stats):
                if f.name in self.decision_log:
                    self.decision_log[f.name].set(getattr(stats, f.name))

    def render(self) -> bytes:
        return generate_latest(self.registry)
