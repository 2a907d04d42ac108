"""Every provider call of a chat request goes through :class:`Dispatcher`: the last gate before a prompt leaves.

In order, for each call (cascade attempt, ensemble member, stream):

1. **Data policy** (defence in depth): under ``local_only`` a model that is not local
   (:func:`llmroute.router.data_policy.is_local`) is never called -- the call fails at once with kind
   ``data_policy``, the provider sees nothing, and ``llmroute_data_policy_blocked`` counts it. Routing
   already makes such models ineligible, so this only fires if something upstream let one through.
2. **Health** (:class:`llmroute.serving.health.ProviderHealth`): an open circuit breaker fails the
   call at once with kind ``circuit_open``, a spent rate limit with ``rate_limited`` (the cascade then
   escalates as after any failure, without waiting for a timeout).
3. The provider call (:class:`llmroute.providers.chat.ChatProvider`, with its retries), whose
   outcome is reported to the breaker and whose reported token usage is charged to the rate limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmroute.data.catalog import ModelSpec
from llmroute.providers.chat import CallResult, ChatProvider, OpenStream, resolve_endpoint
from llmroute.router.data_policy import is_local
from llmroute.serving.health import ProviderHealth
from llmroute.serving.metrics import ServiceMetrics
from llmroute.serving.settings import ServeSettings


class Dispatcher:
    """The provider calls of one request (see module docstring)."""

    def __init__(
        self,
        provider: ChatProvider,
        settings: ServeSettings,
        specs: Mapping[str, ModelSpec | None],
        health: ProviderHealth,
        metrics: ServiceMetrics,
        data_policy: str,
        prompt: str,
        payload: dict[str, Any],
    ) -> None:
        self.provider = provider
        self.settings = settings
        self.specs = specs
        self.health = health
        self.metrics = metrics
        self.data_policy = data_policy
        self.payload = payload
        max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
        # ~4 characters a token (no tokenizer on the event loop); the provider's usage corrects it after the call
        self.estimate = len(prompt) // 4 + 1 + (max_tokens if isinstance(max_tokens, int) else 0)

    def _gate(self, model: str) -> CallResult | None:
        """A failed result when the call must not be made, else None (the call is admitted)."""
        spec = self.specs.get(model)
        if self.data_policy == "local_only" and not is_local(spec):
            self.metrics.data_policy_blocked.labels(model).inc()
            return CallResult(
                False, 0.0, error=f"data_policy local_only: {model} is not a local model; it was not called",
                kind="data_policy", tries=0,
            )
        kind, why = self.health.admit(model, spec, self.estimate)
        if kind is not None:
            return CallResult(False, 0.0, error=f"{model} not called: {why}", kind=kind, tries=0)
        return None

    def _report(self, model: str, kind: str | None, body: dict[str, Any] | None = None) -> None:
        used = 0.0
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(tin, int) and isinstance(tout, int):
                used = float(tin + tout - self.estimate)
        if self.health.record(model, kind, used):
            self.metrics.breaker_trips.labels(model).inc()

    async def call(self, model: str) -> CallResult:
        """One whole answer from ``model``, or the failed result of the gate or the provider."""
        refused = self._gate(model)
        if refused is not None:
            return refused
        endpoint = resolve_endpoint(model, self.specs.get(model), self.provider.config)
        try:
            res = await self.provider.complete(endpoint, self.payload)
        except BaseException:
            self._report(model, "cancelled")  # the request was cancelled: frees a half-open probe slot, counts as nothing
            raise
        if res.kind != "no_endpoint":
            self._report(model, res.kind if not res.ok else None, res.body)
        return res

    async def open_stream(self, model: str) -> CallResult | OpenStream:
        """A streamed answer from ``model`` once it has started, or the failed result."""
        refused = self._gate(model)
        if refused is not None:
            return refused
        endpoint = resolve_endpoint(model, self.specs.get(model), self.provider.config)
        try:
            res = await self.provider.open_stream(endpoint, self.payload)
        except BaseException:
            self._report(model, "cancelled")
            raise
        if isinstance(res, OpenStream):
            self._report(model, None)  # the provider answered; a stream broken later is the stream's error
        elif res.kind != "no_endpoint":
            self._report(model, res.kind if not res.ok else None, res.body)
        return res
