"""How the provider client calls models: its own small configuration, owned by no caller.

The service builds it from its settings (:meth:`llmroute.serving.settings.ServeSettings.provider_client_config`),
the benchmark runner from its own options (:class:`llmroute.benchmarking.calls.CallPolicy`); neither
needs the other's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProviderClientConfig:
    """Endpoints, timeouts and retries of :class:`llmroute.providers.chat.ChatProvider`.

    ``base_urls`` maps a model to its base URL (overrides the catalog's endpoint), ``default_base_url``
    serves every model with neither; ``timeout_s`` bounds one call (a stream: each next byte),
    ``connect_timeout_s`` making the connection; a call is retried ``retries`` times on 429/5xx and
    connection errors (never on timeouts), waiting ``backoff_s`` and doubling it each retry.
    """

    base_urls: Mapping[str, str] = field(default_factory=dict)
    default_base_url: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.25

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError(f"provider timeouts must be positive (timeout_s={self.timeout_s}, "
                             f"connect_timeout_s={self.connect_timeout_s})")
        if self.retries < 0 or self.backoff_s < 0:
            raise ValueError(f"retries and backoff_s must not be negative (retries={self.retries}, "
                             f"backoff_s={self.backoff_s})")
