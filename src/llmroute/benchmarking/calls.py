"""One benchmark call: the catalog endpoint, retries with backoff, real token usage and its cost.

HTTP goes through :class:`llmroute.providers.chat.ChatProvider` (one attempt per call to it);
the retry policy lives here because a benchmark, unlike the serving cascade, also retries timeouts
and measures the latency of the attempt that answered, not of the backoff before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from llmroute.data.catalog import Catalog
from llmroute.data.tokens import count_tokens
from llmroute.providers.chat import ChatProvider, Endpoint, resolve_endpoint
from llmroute.providers.config import ProviderClientConfig
from llmroute.router.text import messages_to_prompt

RETRY_KINDS = frozenset({"timeout", "connect", "http_429", "http_500", "http_502", "http_503", "http_504"})


@dataclass(frozen=True)
class CallPolicy:
    """How calls are made: endpoint overrides, timeout, retries and backoff."""

    base_urls: Mapping[str, str] | None = None
    default_base_url: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.5


@dataclass(frozen=True)
class Answer:
    """The outcome of one call (after retries)."""

    ok: bool
    response: str | None
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    cost_is_estimated: bool = True
    error: str | None = None
    tries: int = 1


class ModelCaller:
    """Calls catalog models through their OpenAI-compatible endpoints and adds up the spend."""

    def __init__(self, http: httpx.AsyncClient, catalog: Catalog, policy: CallPolicy) -> None:
        self.catalog = catalog
        self.policy = policy
        # one attempt per ChatProvider call: the retries of a benchmark call are this class's (see complete)
        self._config = ProviderClientConfig(
            base_urls=dict(policy.base_urls or {}), default_base_url=policy.default_base_url,
            timeout_s=policy.timeout_s, connect_timeout_s=policy.connect_timeout_s, retries=0, backoff_s=0.0,
        )
        self._provider = ChatProvider(http, self._config)
        self.spent_usd = 0.0
        self.calls_sent = 0

    def endpoint(self, model: str) -> Endpoint:
        spec = self.catalog.get(model)
        # the catalog's canonical name is what the provider is asked for
        return resolve_endpoint(spec.name if spec else model, spec, self._config)

    def estimate_cost(self, model: str, messages: list[dict[str, str]], max_tokens: int) -> float | None:
        """Upper-bound cost of a call: counted prompt tokens + ``max_tokens`` of answer."""
        return self.catalog.estimate_cost(model, count_tokens(messages_to_prompt(messages)), max_tokens)

    async def complete(
        self, model: str, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Answer:
        """One chat completion, retried on timeouts, connection errors, 429 and 5xx."""
        endpoint = self.endpoint(model)
        payload = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        last = None
        for attempt in range(self.policy.retries + 1):
            if attempt:
                await asyncio.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
            self.calls_sent += 1
            last = await self._provider.complete(endpoint, payload)
            if last.ok or last.kind not in RETRY_KINDS:
                break
        assert last is not None
        tries = attempt + 1
        if not last.ok or last.body is None:
            return Answer(False, None, last.latency_ms, error=last.error, tries=tries)
        return self._answer(model, messages, last.body, last.latency_ms, tries)

    def _answer(
        self, model: str, messages: list[dict[str, str]], body: dict[str, Any], latency_ms: float, tries: int
    ) -> Answer:
        text = str(body["choices"][0]["message"]["content"])
        usage = body.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        tin = _int(usage.get("prompt_tokens"))
        tout = _int(usage.get("completion_tokens"))
        if tin is None:
            tin = count_tokens(messages_to_prompt(messages))
        if tout is None:
            tout = count_tokens(text)
        reported = usage.get("cost")
        cost: float | None
        if isinstance(reported, (int, float)) and not isinstance(reported, bool):
            cost, estimated = float(reported), False
        else:
            cost, estimated = self.catalog.estimate_cost(model, tin, tout), True
        self.spent_usd += cost or 0.0
        return Answer(True, text, latency_ms, tin, tout, cost, estimated, tries=tries)


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
