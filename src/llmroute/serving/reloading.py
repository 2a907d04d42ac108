"""Loading and atomically replacing the served router (initial load, /admin/reload, polling).

A reload is a transaction (:mod:`llmroute.serving.candidate`): the source is pinned (a folder
snapshot or a registry version's artifact, downloaded once), its checksums verified, the candidate
loaded and smoke-routed in a child process (``reload_isolation``; a native crash kills only the child;
not at the first load, when there is no served router to protect; once per candidate content on a
host, :mod:`llmroute.serving.check_records`), then loaded here and smoke-routed again; only then is it
swapped in. The log line of a reload gives the time each step took. On any failure the served router stays and the
outcome says why (``/admin/reload`` answers 503 with it; ``/ready`` shows the last failure; polling
logs it once and does not retry the same candidate until it changes).
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
from llmroute.providers.chat import missing_endpoints
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


async def reload_router(services: Services) -> ReloadOutcome:
    """Check, load and swap in the configured model (see the module docstring); on failure keep the
    current one and return why."""
    holder = services.holder
    settings = services.settings
    async with holder.reload_lock:
        previous = holder.current.version if holder.current is not None else None
        now = datetime.now(UTC).isoformat(timespec="seconds")
        # the embedder serving now, unwrapped; the new version shares it when it records the same one
        serving_embedder = holder.current.embedder if holder.current else None
        t0 = time.monotonic()
        steps: list[str] = []

        def step(what: str) -> None:
            steps.append(f"{what} {time.monotonic() - t0:.2f} s")

        try:
            pinned = None
            if settings.model.startswith(REGISTRY_PREFIX):
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
        except Exception as exc:  # noqa: BLE001 - any failure keeps the current router
            error = f"{type(exc).__name__}: {exc}"
            if holder.current is None:
                holder.load_error = error
            log.error("loading router from %s failed, still serving %s: %s", settings.model, previous, error)
            services.metrics.reloads.labels("rejected").inc()
            outcome = ReloadOutcome(False, previous, previous, error, now)
            holder.last_reload = outcome
            return outcome
        replaced = holder.swap(router, scorer) is not None
        freeze_heap(replaced)
        services.metrics.reloads.labels("ok").inc()
        log.info(
            "serving router %s from %s (was %s), %d models, %s; %s",
            router.version, services.settings.model, previous, len(router.models),
            "with the answer scorer" if scorer else "WITHOUT an answer scorer (the cascade uses the router's probability)",
            ", ".join(steps),
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


async def poll_for_new_version(services: Services, every_s: float) -> None:
    """Reload whenever the model source points at a version other than the one served; a candidate
    that failed is not tried again until it changes (another version, or the folder's files)."""
    rejected: str | None = None
    model = services.settings.model
    while True:
        await asyncio.sleep(every_s)
        try:
            version = await run_in_threadpool(source_version, model, services.core)
            key = await run_in_threadpool(_source_key, model, version)
        except Exception as exc:  # noqa: BLE001 - a flaky store or a half-copied folder must not stop polling
            log.warning("polling %s failed: %s", model, exc)
            continue
        current = services.holder.current
        if (current is None or current.version != version) and key != rejected:
            outcome = await reload_router(services)
            rejected = None if outcome.ok else key
