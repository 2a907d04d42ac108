"""Configuration of the routing service (``LLMROUTE_SERVE_`` environment variables).

List and mapping fields take JSON in the environment, e.g.
``LLMROUTE_SERVE_API_KEYS='["k1","k2"]'`` and
``LLMROUTE_SERVE_PROVIDER_BASE_URLS='{"gpt-4-1106-preview": "http://127.0.0.1:9000/v1"}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmroute.providers.config import ProviderClientConfig

DEFAULT_MODEL = "models:/llmroute@champion"
MAX_EXPLORATION_SHARE = 0.5


class ServeSettings(BaseSettings):
    """What `llmroute serve` can be told. Nothing reads the environment until this is instantiated."""

    model_config = SettingsConfigDict(env_prefix="LLMROUTE_SERVE_", extra="ignore")

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Router to serve: a saved router folder, or a registry URI 'models:/<name>@<alias>' / '/<version>'.",
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Accepted client API keys ('Authorization: Bearer KEY', else 'X-API-Key: KEY'); "
        "empty, with no admin keys either = auth off.",
    )
    admin_api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Admin keys: the only keys accepted on admin routes (/admin/*); also accepted wherever a "
        "client key is. With client keys configured and no admin key, admin routes answer 403.",
    )
    dashboard_api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Read-only dashboard keys: accepted only by /dashboard (its login form, its data), where admin "
        "keys are accepted too; client keys are not (the dashboard shows every tenant's spend).",
    )
    dashboard_session_hours: float = Field(
        default=12.0, gt=0, description="How long a dashboard login cookie stays valid.",
    )
    dashboard_seed_budget_usd: float = Field(
        default=0.05, gt=0,
        description="Budget per request the seed budget rule is given for the dashboard's 'savings against the seed "
        "budget rule' when a request sets no max cost (the middle of seed_rules.yaml's budgets_to_evaluate).",
    )
    open_docs: bool = Field(
        default=False,
        description="Serve /docs, /redoc and /openapi.json without a key. Off (default): they take a client or "
        "admin key like every other route but /health and /ready (with no keys configured, everything is open).",
    )
    provider_base_urls: dict[str, str] = Field(
        default_factory=dict, description="Per-model OpenAI-compatible base URL overrides (model -> base URL)."
    )
    default_base_url: str | None = Field(
        default=None,
        description="Base URL for models with neither an override nor a catalog endpoint (e.g. a gateway).",
    )
    provider_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one provider call.")
    provider_connect_timeout_s: float = Field(default=5.0, gt=0)
    provider_http: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="HTTP client of provider calls (see llmroute.providers.http): aiohttp costs 5-10x "
        "less CPU per call than httpx.",
    )
    provider_retries: int = Field(
        default=2, ge=0, description="Retries of one provider call on 429/5xx/connection errors (not on timeouts)."
    )
    retry_backoff_s: float = Field(default=0.25, ge=0, description="First retry delay; doubles each retry.")
    cascade_confidence: float = Field(
        default=0.5, ge=0, le=1, description="Escalate when an answer's confidence is below this."
    )
    scorer_weight: float = Field(
        default=2.0, ge=0,
        description="Weight of the response scorer's probability in an answer's confidence (router probability "
        "weighs 1, logprobs 1; see serving.cascade). 0 = ignore the scorer.",
    )
    use_scorer: bool = Field(
        default=True, description="Load the router's response scorer ('<router folder>/scorer', or the one registered with a registry version) when present and use it for answer confidence."
    )
    cascade_operating_points: bool = Field(
        default=True,
        description="When the served scorer comes with cascade operating points (fitted by `llmroute train`), a "
        "chat request's quality target (or the router's default) picks the router knob, the per-attempt "
        "thresholds and the scorer weight jointly; otherwise cascade_confidence and scorer_weight apply.",
    )
    max_ensemble: int = Field(default=5, ge=1, description="Largest best_of_n / majority_vote a request may ask.")
    cascade_max_attempts: int = Field(default=3, ge=1, description="Most models tried for one chat request.")
    max_body_bytes: int = Field(default=1_000_000, gt=0, description="Larger request bodies get 413.")
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024,
        description="Request line + headers larger than this get 431 before they are parsed (llmroute serve's "
        "HTTP protocol, serving.http_protocol).",
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Request headers that take longer than this to arrive get 408 (slow clients)."
    )
    compute_threads: int | None = Field(
        default=1, ge=1,
        description="OpenMP threads per request thread for routing (None = library default); see serving.compute.",
    )
    compute_workers: int = Field(
        default=8, ge=1,
        description="Threads that run routing and answer scoring (a dedicated pool; requests beyond it queue). "
        "Routing requests waiting in these threads are routed together (see route_batch_max), so a few "
        "more threads than cores pay off: on 2 cores 8 beat 2 (batches of at most 2) and 16 (more GIL "
        "contention, worse p99).",
    )
    route_batch_max: int = Field(
        default=32, ge=1,
        description="Most concurrent routing requests routed together in one embed + LightGBM call "
        "(1 = each alone); see serving.batching.",
    )
    reload_poll_s: float = Field(
        default=0.0, ge=0, description="Poll the model source this often and reload on a new version (0 = off)."
    )
    reload_prepare_alias: str = Field(
        default="challenger",
        description="With reload_poll_s and a registry alias (models:/NAME@ALIAS): when this alias of NAME "
        "(the one `llmroute train` sets and `llmroute promote` promotes) names a version other than the one "
        "served, prepare it in the background (download, checksums, isolated check, load, smoke routing; at "
        "most one prepared router per process), so that promoting it only swaps it in. A version that fails "
        "is not prepared again; promoted, it goes through the whole reload. '' = off.",
    )
    reload_isolation: bool = Field(
        default=True,
        description="Load and smoke-route every candidate router in a child process before loading it here "
        "(a native crash on a damaged file kills only the child). Off: checksums and the in-process smoke "
        "routing only.",
    )
    reload_check_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest the isolated check of a candidate router may take."
    )
    decision_log_url: str | None = Field(
        default=None,
        description="Decision/outcome/feedback log (SQLAlchemy URL: sqlite:///... or postgresql://...). "
        "None = 'decisions.sqlite' under the llmroute home (LLMROUTE_HOME); '' or 'off' = no logging.",
    )
    decision_log_spool_dir: str | None = Field(
        default=None,
        description="Local directory of the decision log's append-only spool (records are fsynced there in batches "
        "at most 50 ms apart before they go to the database, and replayed after a database outage, a full disk "
        "or a restart). None = 'spool' under the llmroute home. Worker processes of one host may share it (each "
        "locks its own file); replicas on different hosts need their own.",
    )
    decision_log_shipper: Literal["process", "thread"] = Field(
        default="process",
        description="Where the decision log's database writes run: 'process' = a child process of this worker "
        "(its own GIL: building rows and rollups, ~0.08 ms of CPU a record, never competes with requests; the "
        "spool and its guarantees are the same), 'thread' = a thread of the worker itself (one process less).",
    )
    decision_log_retention_days: float | None = Field(
        default=None, gt=0,
        description="Delete decisions, outcomes and feedback older than this many days (checked hourly). "
        "None = keep everything.",
    )
    feedback_grace_s: float = Field(
        default=600.0, ge=0,
        description="/feedback for a decision id the database does not hold yet is accepted (202) while the id "
        "was issued less than this many seconds ago (its decision may still be in a spool); older unknown ids "
        "answer 404.",
    )
    redact_prompts: bool = Field(
        default=False, description="Log only each prompt's SHA-256 and embedding, never its text."
    )

    experiment: str | None = Field(
        default=None,
        description="A/B experiment YAML (see docs/ab-testing.md): each request is served by the arm its unit "
        "(user, tenant or session) hashes to, and the arm is logged and returned. None = no experiment.",
    )

    exploration_share: float = Field(
        default=0.0, ge=0, le=MAX_EXPLORATION_SHARE,
        description="Share of decisions sent to another eligible model, drawn uniformly from the exploration set "
        "of exploration_mode (0 = off; at most 0.5). The served model's propensity is logged for off-policy "
        "evaluation.",
    )
    exploration_mode: Literal["uniform", "runner_up"] = Field(
        default="uniform",
        description="Which models an explored decision may serve. 'uniform': every other eligible model "
        "(propensity share/k, k = the other eligible models); evidence about any policy, spread thinly. "
        "'runner_up': the exploration_top_k eligible models the router's own rule ranks next after its pick "
        "(threshold rule: the models clearing the bar from cheapest up, then the others by decreasing "
        "probability; utility rule: decreasing utility); propensity share/k' (k' <= top_k, fewer when fewer "
        "are eligible). Far more evidence per explored call about challengers that differ from the router by "
        "a rank or two, none about policies choosing outside that set. The mode, top_k, share and the set are "
        "logged with the decision (constraints JSON, key 'exploration').",
    )
    exploration_top_k: int = Field(
        default=2, ge=1, description="Size of the runner-up set under exploration_mode 'runner_up'."
    )
    exploration_mode_by_tenant: dict[str, Literal["uniform", "runner_up"]] = Field(
        default_factory=dict, description="Per-tenant exploration mode (tenant -> mode), overriding the default."
    )
    exploration_by_tenant: dict[str, float] = Field(
        default_factory=dict, description="Per-tenant exploration share (tenant -> share), overriding the default."
    )
    exploration_seed: int | None = Field(
        default=None, description="Seed of the exploration draws (deterministic; for tests). None = OS randomness."
    )

    data_policy: Literal["any", "prefer_local", "local_only"] = Field(
        default="any",
        description="Where prompts may be sent unless a tenant or request says stricter: 'any'; 'prefer_local' "
        "(a local model when its P(meets target) clears the target's bar, else API); 'local_only' (only models "
        "the catalog marks local: true; a request no local model can serve is refused, never sent to an API).",
    )
    data_policy_by_tenant: dict[str, Literal["any", "prefer_local", "local_only"]] = Field(
        default_factory=dict,
        description="Per-tenant data policy (tenant -> policy). A request's own data_policy can make it "
        "stricter, never looser: the strictest of the default (for tenants not listed), the tenant's and the "
        "request's applies.",
    )
    catalog: str | None = Field(
        default=None,
        description="A catalog YAML (the bundled catalog's format) whose entries replace the served router's "
        "catalog snapshot for the models they name: mark a self-hosted model 'local: true', set its endpoint "
        "or rate limits (rate_limit_rpm, rate_limit_tpm) for this deployment. None = the router's snapshot.",
    )
    breaker_failure_threshold: int = Field(
        default=10, ge=1, description="Consecutive failed calls that open a model's circuit breaker."
    )
    breaker_error_rate: float = Field(
        default=0.5, gt=0, le=1,
        description="Share of failed calls within breaker_window_s (once breaker_min_calls have ended) that "
        "opens the breaker.",
    )
    breaker_window_s: float = Field(default=60.0, gt=0, description="Window of the breaker's error rate.")
    breaker_min_calls: int = Field(default=20, ge=1, description="Calls in the window before the error rate counts.")
    breaker_cooldown_s: float = Field(
        default=30.0, ge=0,
        description="How long an open breaker keeps its model unavailable before one probe call is let through.",
    )
    budgets: str | None = Field(
        default=None,
        description="Budget file (YAML, see llmroute.budgets.spec): spend limits per tenant, API key, user or "
        "everything, with alert/pace/downgrade/block enforcement. Needs the decision log. A bad file stops the "
        "service from starting; a bad edit later keeps the last good budgets. None = only budgets made with "
        "PUT /admin/budgets/{name}.",
    )
    budget_refresh_s: float = Field(
        default=1.0, gt=0,
        description="Refresh cached budget spend from the ledger, check the budget file and fire alerts this often.",
    )
    budget_exact_share: float = Field(
        default=0.0, ge=0,
        description="A block budget whose cached spend is at or above this share of its amount is read from the "
        "database on every check. 0 (default): always, so no process admits a request once the amount is spent "
        "(overshoot <= the requests in flight). Higher values skip that read below the share, at the risk of "
        "admitting requests on spend up to budget_refresh_s old from other processes.",
    )

    @field_validator("exploration_by_tenant")
    @classmethod
    def _tenant_shares(cls, shares: dict[str, float]) -> dict[str, float]:
        for tenant, share in shares.items():
            if not 0.0 <= share <= MAX_EXPLORATION_SHARE:  # also rejects NaN
                raise ValueError(
                    f"exploration share of tenant {tenant!r} must be from 0 to {MAX_EXPLORATION_SHARE}, got {share}"
                )
        return shares

    def exploration_share_for(self, tenant: str | None) -> float:
        """The exploration share of ``tenant`` (its override, else the default)."""
        if tenant is not None and tenant in self.exploration_by_tenant:
            return self.exploration_by_tenant[tenant]
        return self.exploration_share

    def exploration_mode_for(self, tenant: str | None) -> str:
        """The exploration mode of ``tenant`` (its override, else the default)."""
        if tenant is not None and tenant in self.exploration_mode_by_tenant:
            return self.exploration_mode_by_tenant[tenant]
        return self.exploration_mode

    def data_policy_for(self, tenant: str | None) -> str:
        """The data policy of ``tenant`` (its own, else the default); a request may only tighten it."""
        if tenant is not None and tenant in self.data_policy_by_tenant:
            return self.data_policy_by_tenant[tenant]
        return self.data_policy

    def provider_client_config(self) -> ProviderClientConfig:
        """The provider client's configuration from these settings (endpoints, timeouts, retries)."""
        return ProviderClientConfig(
            base_urls=dict(self.provider_base_urls), default_base_url=self.default_base_url,
            timeout_s=self.provider_timeout_s, connect_timeout_s=self.provider_connect_timeout_s,
            retries=self.provider_retries, backoff_s=self.retry_backoff_s,
        )

    def spool_dir(self, home: Path) -> Path:
        """Where this service's decision-log spool lives."""
        return Path(self.decision_log_spool_dir).expanduser() if self.decision_log_spool_dir else Path(home) / "spool"

    def decision_log_enabled(self) -> bool:
        return self.decision_log_url is None or self.decision_log_url.strip().lower() not in ("", "off")

    def key_values(self) -> tuple[str, ...]:
        return tuple(k.get_secret_value() for k in self.api_keys)

    def admin_key_values(self) -> tuple[str, ...]:
        return tuple(k.get_secret_value() for k in self.admin_api_keys)

    def dashboard_key_values(self) -> tuple[str, ...]:
        """Keys that open the dashboard: admin keys and read-only dashboard keys."""
        return self.admin_key_values() + tuple(k.get_secret_value() for k in self.dashboard_api_keys)

    def auth_enabled(self) -> bool:
        """False when no key of any kind is configured (every route is open)."""
        return bool(self.api_keys or self.admin_api_keys or self.dashboard_api_keys)
