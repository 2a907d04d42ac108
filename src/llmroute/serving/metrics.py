"""Prometheus metrics of one app instance, on its own CollectorRegistry (never the global one)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class ServiceMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    routed: Counter
    cost: Counter
    escalations: Counter
    provider_errors: Counter

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
            cost=Counter("llmroute_cost_usd", "USD spent on provider calls, by model.", ["model"], registry=reg),
            escalations=Counter(
                "llmroute_escalations", "Cascade escalations, by reason.", ["reason"], registry=reg
            ),
            provider_errors=Counter(
                "llmroute_provider_errors", "Failed provider calls, by model and kind.", ["model", "kind"],
                registry=reg,
            ),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
