"""The dashboard's panels as JSON-able dicts: the overview (from the decision log's rollups, with the
budgets in force from :func:`llmroute.budgets.report.status_rows`), the A/B
experiment (the ``llmroute ab report`` analysis over the window) and the registry (the served
router, and the registered versions when it is served from the registry). Blocking: call from a thread.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

from llmroute.budgets.report import status_rows
from llmroute.data.decision_log.overview import (
    MEASURES,
    WINDOWS,
    Overview,
    derived,
    read_overview,
)
from llmroute.serving.state import Services

NO_BUDGETS_NOTE = "no budgets configured (LLMROUTE_SERVE_BUDGETS, or PUT /admin/budgets/{name})"


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _measures(m: Any) -> dict[str, Any]:
    return {**{k: m[k] for k in MEASURES}, **derived(m)}


def overview_json(o: Overview, show_prompts: bool) -> dict[str, Any]:
    """The overview as the page's JSON. ``show_prompts`` False: no prompt text leaves the service."""
    reasons = [
        {"reason": "router's pick", "count": o.totals["decisions"] - o.totals["explored"] - o.totals["constrained"]
         - o.totals["fallback"] - o.totals["static"]},
        {"reason": "constraint binding", "count": o.totals["constrained"]},
        {"reason": "no model cleared the bar", "count": o.totals["fallback"]},
        {"reason": "exploration", "count": o.totals["explored"]},
        {"reason": "A/B static rule", "count": o.totals["static"]},
        {"reason": "cascade escalation", "count": o.totals["escalations"]},
    ]
    return {
        "window": o.window.name,
        "tenant": o.tenant,
        "since": o.since.isoformat(),
        "until": o.until.isoformat(),
        "step_s": o.window.step_s,
        "buckets": [datetime.fromtimestamp(b, UTC).isoformat() for b in o.buckets],
        "tenants": list(o.tenants),
        "totals": _measures(o.totals),
        "by_model": [{"model": k, **_measures(v)} for k, v in o.by_model.items()],
        "by_tenant": [{"tenant": k, **_measures(v)} for k, v in o.by_tenant.items()],
        "series": {k: {n: list(v) for n, v in s.items()} for k, s in o.series.items()},
        "reasons": reasons,
        "latency": {k: dict(v) for k, v in o.latency.items()},
        "recent": [
            {**dataclasses.asdict(r), "created_at": r.created_at.isoformat(),
             "prompt": (r.prompt[:200] if r.prompt else None) if show_prompts else None}
            for r in o.recent
        ],
        "prompts_shown": show_prompts,
    }


def budgets_json(services: Services, tenant: str | None) -> dict[str, Any]:
    """The budgets in force with their current window (the rows of ``llmroute budgets status``, same function).
    ``tenant`` set: per-tenant budgets of other tenants are left out (global, key and user budgets stay:
    they are not per tenant). Blocking: reads the ledger."""
    control = services.budgets
    if control is None:
        return {"available": False, "rows": [], "note": "budgets need the decision log, and this service runs without one"}
    specs = [s for s in control.specs.values() if tenant is None or s.scope != "tenant" or s.subject == tenant]
    rows = finite(status_rows(control.ledger, specs, control.sources))
    note = None
    if not rows:
        note = NO_BUDGETS_NOTE if not control.specs else f"no budget applies to tenant {tenant!r}"
    return {"available": True, "rows": rows, "note": note, "file_error": control.last_error}


def overview(services: Services, window: str, tenant: str | None) -> dict[str, Any]:
    """The overview panel of ``window`` and ``tenant`` (None = all), with the served router's version."""
    log = services.decision_log
    served = services.holder.served
    head = {"router_version": served.router.version if served else None, "logging": log is not None,
            "redact_prompts": services.settings.redact_prompts}
    if log is None:
        return {"served": head, "error": "the decision log is off (LLMROUTE_SERVE_DECISION_LOG_URL=off): nothing to show"}
    o = read_overview(log.store.engine, window, tenant)
    return {"served": head, **overview_json(o, show_prompts=not services.settings.redact_prompts),
            "budgets": budgets_json(services, tenant)}


def ab_panel(services: Services, window: str) -> dict[str, Any]:
    """The served experiment's analysis over ``window`` (all tenants), or why there is none."""
    live = services.experiment
    if live is None:
        return {"experiment": None, "note": "no A/B experiment is being served (llmroute serve --experiment FILE)"}
    if services.decision_log is None:
        return {"experiment": live.experiment.name, "note": "the decision log is off: no observations"}
    from llmroute.abtest.report import analyse, observations_from_log

    since = datetime.fromtimestamp(time.time() - WINDOWS[window].length_s, UTC)
    obs = observations_from_log(services.decision_log.store.url, live.experiment, since)
    report = analyse(live.experiment, obs, {"window": window, "since": since.isoformat()})
    return {"experiment": live.experiment.name, "report": finite(report)}


REGISTRY_CACHE_S = 30.0
_registry_cache: dict[tuple[str, str, str], tuple[float, list[dict[str, Any]] | str]] = {}
_registry_lock = threading.Lock()


def registry_panel(services: Services) -> dict[str, Any]:
    """The served router and, when it comes from the registry, its versions (champion, challenger, ...).
    One registry (tracking store and model URI) is asked at most once per ``REGISTRY_CACHE_S`` seconds."""
    served = services.holder.served
    out: dict[str, Any] = {"model": services.settings.model, "router_version": served.router.version if served else None,
                           "versions": [], "note": None}
    if not services.settings.model.startswith("models:/"):
        out["note"] = "served from a folder, not from the registry"
        return out
    key = (services.settings.model, str(services.core.tracking_uri), str(services.core.home))
    with _registry_lock:
        cached = _registry_cache.get(key)
    if cached is None or time.monotonic() - cached[0] >= REGISTRY_CACHE_S:
        cached = (time.monotonic(), _registry_versions(services))
        with _registry_lock:
            _registry_cache[key] = cached
    if isinstance(cached[1], str):
        out["note"] = cached[1]
    else:
        out["versions"] = cached[1]
    return out


def _registry_versions(services: Services) -> list[dict[str, Any]] | str:
    """The registered versions, newest first (at most 20), or why they cannot be read."""
    from llmroute.artifacts.registry import list_models

    try:
        rows = list_models(services.core)
    except Exception as exc:  # noqa: BLE001 - the panel says why, the page still loads
        return f"the registry is unavailable: {type(exc).__name__}: {exc}"
    return [
        {"version": r.version, "aliases": list(r.aliases), "created": r.created, "val_aiq": r.val_aiq,
         "test_aiq": r.test_aiq, "promotion_aiq": r.promotion_aiq, "promoted_at": r.tags.get("promotion.at"),
         "promotion": r.tags.get("promotion.decision")}
        for r in rows[:20]
    ]
