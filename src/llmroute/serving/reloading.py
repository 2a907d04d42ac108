"""Loading and atomically replacing the served router (initial load, /admin/reload, polling).

A reload is a transaction (:mod:`llmroute.serving.candidate`): the source is pinned (a folder
snapshot or a registry version's artifact, downloaded once), its checksums verified, the candidate
loaded and smoke-routed in a child process (``reload_isolation``; a native crash kills only the child;
not at the first load, when there is no served router to protect; once per candidate content on a
host, :mod:`llmroute.serving.check_records`), then loaded here and smoke-routed again; only then is it
swapped in. The log line of a reload gives the time each step took. On any failure the served router stays and the
outcome says why (``/admin/reload`` answers 503 with it; ``/ready`` shows the last failure; polling
logs it once and does not retry the same candidate until it changes).

Preparing ahead (``reload_prepare_alias``, default ``challenger``, when polling a registry alias):
between promotions, the poll also reads the version that alias names (the one ``llmroute promote``
would promote); when it is not the one served, it runs the whole transaction
on it except the swap (:func:`prepare_router`) and keeps the result, at most one per process. When the
alias then moves to that version, the poll swaps the prepared router in without downloading,
checking or loading anything: a promotion costs one poll and a swap. The prepared router passed the
same steps (pinned, verified, isolated check, loaded and smoke-routed here) as a reload's, so the
guarantee is the same; a version that fails them is logged and not prepared again, and if it is
promoted anyway, the normal reload rejects it with its reason. The poll waits while it prepares (a
promotion that comes meanwhile is seen when the preparation ends).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from llmroute.artifacts.loading import REGISTRY_PREFIX, load_served, source_version
from llmroute.artifacts.registry import alias_version
from llmroute.providers.chat import missing_endpoints
from llmroute.router.answer_scorer import ResponseScorer
from llmroute.router.router import Router
from llmroute.serving.candidate import check_candidate, prepare_candidate, smoke_served
from llmroute.serving.state import Services, freeze_heap

log = logging.getLogger("llmroute.serving")


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    router_version: str | None
    previous_version: str | None
    error: str | None = None
    at: str = ""


def _source_key(model: str, version: str) -> str:
    """What identifies a candidate for polling: the version, and for a folder its files' sizes and times."""
    if model.startswith(REGISTRY_PREFIX):
        return version
    folder = Path(model).expanduser()
    stats = [p.stat() for p in sorted(folder.rglob("*")) if p.is_file()]
    return f"{version}|{sum(s.st_size for s in stats)}|{max((s.st_mtime_ns for s in stats), default=0)}"


@dataclass(frozen=True)
class PreparedRouter:
    """A candidate that went through every step of the reload transaction but the swap: pinned, verified,
    checked in isolation, loaded and smoke-routed in this process. ``steps``: each step and the seconds
    since the preparation began."""

    router: Router
    scorer: ResponseScorer | None
    steps: tuple[str, ...]

    @property
    def version(self) -> str:
        return self.router.version


async def prepare_router(services: Services, pinned: str | None = None) -> PreparedRouter:
    """Run the reload transaction on the configured model up to the swap (see the module docstring) and
    return the result; a registry model is pinned to ``pinned`` (``<name>/<version>``) when given, else
    to the version its alias names now. Raises what failed; nothing is swapped."""
    holder = services.holder
    settings = services.settings
    # the embedder serving now, unwrapped; the new version shares it when it records the same one
    serving_embedder = holder.current.embedder if holder.current else None
    t0 = time.monotonic()
    steps: list[str] = []

    def step(what: str) -> None:
        steps.append(f"{what} {time.monotonic() - t0:.2f} s")

    if settings.model.startswith(REGISTRY_PREFIX) and pinned is None:
        pinned = await run_in_threadpool(source_version, settings.model, services.core)
    candidate = await run_in_threadpool(prepare_candidate, settings.model, services.core, pinned)
    step("pinned and verified")
    try:
        # isolation protects a served router; at the first load there is none to keep (a crash
        # there is a failed start), so it is skipped to keep startup fast
        if settings.reload_isolation and holder.current is not None:
            checked = await check_candidate(candidate, services.core, settings.use_scorer,
                                            settings.reload_check_timeout_s)
            step({"ran": "isolated check", "host": "isolated check (this host's record)",
                  "registry": "isolated check (the registry's record)"}[checked.how])
        router, scorer = await run_in_threadpool(load_served, candidate.source, services.core,
                                                 settings.use_scorer, reuse=serving_embedder)
        if candidate.registry_version is not None:
            router = router.with_version(candidate.registry_version)
        step("loaded")
        await run_in_threadpool(smoke_served, router, scorer)
        step("smoke-routed")
    finally:
        await run_in_threadpool(candidate.discard)
    return PreparedRouter(router, scorer, tuple(steps))


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]


async def reload_router(
    services: Services, pinned: str | None = None, prepared: PreparedRouter | None = None,
    seen_at: float | None = None,
) -> ReloadOutcome:
    """Check, load and swap in the configured model (see the module docstring); on failure keep the
    current one and return why. ``pinned``: the registry version to load (default: the one the alias
    names now); ``prepared``: a router :func:`prepare_router` prepared for that version, swapped in as it
    is; ``seen_at``: when the poll saw the new version (``time.time()``), for the log line."""
    holder = services.holder
    settings = services.settings
    async with holder.reload_lock:
        previous = holder.current.version if holder.current is not None else None
        now = datetime.now(UTC).isoformat(timespec="seconds")
        t0 = time.time() if seen_at is None else seen_at
        try:
            ready = prepared if prepared is not None else await prepare_router(services, pinned)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the current router
            error = f"{type(exc).__name__}: {exc}"
            if holder.current is None:
                holder.load_error = error
            log.error("loading router from %s failed, still serving %s: %s", settings.model, previous, error)
            services.metrics.reloads.labels("rejected").inc()
            outcome = ReloadOutcome(False, previous, previous, error, now)
            holder.last_reload = outcome
            return outcome
        router, scorer = ready.router, ready.scorer
        old = holder.swap(router, scorer)
        swapped_at = time.time()
        # the replaced models are freed by reference counting; a replaced embedder may leave cycles
        collected = old is not None and old.embedder is not router.embedder
        freeze_heap(collect=collected)
        frozen = time.time() - swapped_at
        services.metrics.reloads.labels("ok").inc()
        how = (f"prepared in advance ({', '.join(ready.steps)})" if prepared is not None else ", ".join(ready.steps))
        seen = f"; the poll saw it at {_clock(seen_at)}" if seen_at is not None else ""
        log.info(
            "serving router %s from %s (was %s), %d models, %s; %s; swapped in %.2f s after it began%s, at %s "
            "(heap %s in %.2f s)",
            router.version, services.settings.model, previous, len(router.models),
            "with the answer scorer" if scorer else "WITHOUT an answer scorer (the cascade uses the router's probability)",
            how, swapped_at - t0, seen, _clock(swapped_at), "collected and frozen" if collected else "frozen", frozen,
        )
        missing = missing_endpoints(router.models, router.specs, services.settings.provider_client_config())
        if missing:
            log.warning(
                "no endpoint for %d of %d models (%s): chat requests routed to them fail with 502; give "
                "--default-base-url URL or --base-url MODEL=URL", len(missing), len(router.models), ", ".join(missing),
            )
        outcome = ReloadOutcome(True, router.version, previous, None, now)
        holder.last_reload = outcome
        return outcome


def _prepare_alias(services: Services) -> str | None:
    """The registry alias whose version polling prepares ahead, or None (not a registry alias, or off)."""
    model = services.settings.model
    alias = services.settings.reload_prepare_alias.strip()
    return alias if alias and model.startswith(REGISTRY_PREFIX) and "@" in model else None


async def poll_for_new_version(services: Services, every_s: float) -> None:
    """Reload whenever the model source points at a version other than the one served; a candidate
    that failed is not tried again until it changes (another version, or the folder's files). Between
    reloads, prepare the version of ``reload_prepare_alias`` ahead (see the module docstring)."""
    rejected: str | None = None
    model = services.settings.model
    registry = model.startswith(REGISTRY_PREFIX)
    prepared: PreparedRouter | None = None  # at most one, for the version it names

    def keep(ready: PreparedRouter | None) -> None:
        nonlocal prepared
        prepared = ready
        services.holder.prepared_version = None if ready is None else ready.version

    not_prepared: str | None = None  # the last version whose preparation failed: not tried again
    while True:
        await asyncio.sleep(every_s)
        if services.holder.reload_lock.locked():
            continue  # a reload (the first load, /admin/reload) is under way: look again once it is done
        seen_at = time.time()
        try:
            version = await run_in_threadpool(source_version, model, services.core)
            key = await run_in_threadpool(_source_key, model, version)
        except Exception as exc:  # noqa: BLE001 - a flaky store or a half-copied folder must not stop polling
            log.warning("polling %s failed: %s", model, exc)
            continue
        current = services.holder.current
        if (current is None or current.version != version) and key != rejected:
            ready = prepared if prepared is not None and prepared.version == version else None
            keep(None)  # swapped in now, or superseded by the version the alias names
            outcome = await reload_router(services, version if registry else None, ready, seen_at)
            rejected = None if outcome.ok else key
            continue
        alias = _prepare_alias(services)
        if current is None or alias is None:
            continue
        try:
            ahead = await run_in_threadpool(alias_version, model, alias, services.core)
        except Exception as exc:  # noqa: BLE001 - preparing ahead is an optimisation: polling goes on
            log.warning("polling %s for the version of its alias '%s' failed: %s", model, alias, exc)
            continue
        if prepared is not None and prepared.version == current.version:
            keep(None)  # served already (another reload got there first)
        if ahead is None or ahead in (current.version, not_prepared):
            continue
        if prepared is not None and prepared.version == ahead:
            continue
        keep(None)  # the one kept is not that version: drop it before loading another (one at a time)
        try:
            keep(await prepare_router(services, ahead))
        except Exception as exc:  # noqa: BLE001 - recorded; a promotion of it gets the whole reload
            not_prepared = ahead
            log.warning("preparing %s ahead of a promotion failed (if it is promoted, the reload checks it "
                        "again and refuses it): %s: %s", ahead, type(exc).__name__, exc)
            continue
        log.info("prepared %s ahead of a promotion (%s); serving %s until the alias moves to it",
                 ahead, ", ".join(prepared.steps) if prepared else "", current.version)
