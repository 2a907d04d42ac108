"""``GET /dashboard``: the operator's dashboard, served by the app itself (no CDN, no other server).

* ``GET /dashboard``: the page, or the login form when the request is not signed in.
* ``POST /dashboard/login`` (form field ``key``): an admin or dashboard key
  (``LLMROUTE_SERVE_DASHBOARD_API_KEYS``) sets an HttpOnly, SameSite=Strict session cookie
  (:mod:`llmroute.serving.dashboard_session`; never the key itself); ``POST /dashboard/logout`` clears it.
* ``GET /dashboard/api/overview|ab|registry?window=hour|day|30d&tenant=``: the panels' JSON (cookie, or
  the key as ``Authorization: Bearer``/``X-API-Key``). Client keys are refused (403): the dashboard
  shows every tenant's spend. With no key of any kind configured, everything is open.
* ``GET /dashboard/static/{file}``: the page's script and style sheet (package data).

Every response carries a strict Content-Security-Policy (scripts and styles from this origin only, no
inline script, no framing). Prompts are never sent when prompt redaction is on.
"""

from __future__ import annotations

import asyncio
import html
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from llmroute.data.decision_log.overview import WINDOWS
from llmroute.serving import dashboard_session
from llmroute.serving.dashboard_panels import ab_panel, overview, registry_panel
from llmroute.serving.deps import ServicesDep, key_matches, presented_key
from llmroute.serving.errors import ServiceError
from llmroute.serving.state import Services, run_cpu

router = APIRouter(tags=["dashboard"])

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
MAX_LOGIN_BODY = 4096


def _headers(cache: bool = False) -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cache-Control": "max-age=300" if cache else "no-store"}


def _asset(name: str) -> str:
    return resources.files("llmroute.serving").joinpath("dashboard", name).read_text(encoding="utf-8")


def _signed_in(request: Request, services: Services, authorization: str | None, x_api_key: str | None) -> bool:
    """Whether the request may see the dashboard; raises 403 for a client key or when no key can open it."""
    settings = services.settings
    if not settings.auth_enabled():
        return True
    keys = settings.dashboard_key_values()
    given = presented_key(authorization, x_api_key)
    if key_matches(given, keys) or dashboard_session.verify(request.cookies.get(dashboard_session.COOKIE), keys):
        return True
    if not keys:
        raise ServiceError(403, "forbidden", "no admin or dashboard key is configured "
                           "(LLMROUTE_SERVE_ADMIN_API_KEYS, LLMROUTE_SERVE_DASHBOARD_API_KEYS), so the dashboard is closed")
    if key_matches(given, settings.key_values()):
        raise ServiceError(403, "forbidden", "the dashboard needs an admin or dashboard key; a client key is not enough")
    return False


async def require_dashboard(
    request: Request, services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None, x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    if not _signed_in(request, services, authorization, x_api_key):
        raise ServiceError(401, "unauthorized", "sign in at /dashboard, or send an admin or dashboard key",
                           headers={"WWW-Authenticate": "Bearer"})


Dashboard = [Depends(require_dashboard)]


def _login_page(message: str | None, status: int) -> HTMLResponse:
    note = f'<p class="error" id="login-error">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(_asset("login.html").replace("<!--MESSAGE-->", note), status_code=status, headers=_headers())


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def page(
    request: Request, services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None, x_api_key: Annotated[str | None, Header()] = None,
) -> Response:
    """The dashboard page when signed in, else the login form."""
    if not _signed_in(request, services, authorization, x_api_key):
        return _login_page(None, 200)
    return HTMLResponse(_asset("index.html"), headers=_headers())


@router.post("/dashboard/login", include_in_schema=False)
async def login(request: Request, services: ServicesDep) -> Response:
    """Check the form's ``key``; on success set the session cookie and go to the dashboard."""
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        return _login_page("the login form was too large", 413)
    key = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0].strip()
    settings = services.settings
    if settings.auth_enabled():
        keys = settings.dashboard_key_values()
        if not key or not key_matches(key, keys):
            why = ("a client key cannot open the dashboard: use an admin or dashboard key"
                   if key and key_matches(key, settings.key_values()) else "that key is not an admin or dashboard key")
            return _login_page(why, 401)
    response = RedirectResponse("/dashboard", status_code=303, headers=_headers())
    if settings.auth_enabled():
        lifetime = settings.dashboard_session_hours * 3600
        response.set_cookie(
            dashboard_session.COOKIE, dashboard_session.issue(key, lifetime), max_age=int(lifetime),
            path="/dashboard", httponly=True, samesite="strict", secure=request.url.scheme == "https",
        )
    return response


@router.post("/dashboard/logout", include_in_schema=False)
async def logout() -> Response:
    response = RedirectResponse("/dashboard", status_code=303, headers=_headers())
    response.delete_cookie(dashboard_session.COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    if name not in STATIC:
        raise ServiceError(404, "not_found", f"no dashboard file {name!r}")
    return Response(_asset(name), media_type=STATIC[name], headers=_headers(cache=True))


WindowQ = Annotated[str, Query(description=f"one of {', '.join(WINDOWS)}")]


def _window(window: str) -> str:
    if window not in WINDOWS:
        raise ServiceError(422, "invalid_request", f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    return window


def _json(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(data, headers=_headers())


@router.get("/dashboard/api/overview", dependencies=Dashboard)
async def overview_api(services: ServicesDep, window: WindowQ = "day", tenant: str | None = None) -> JSONResponse:
    """Spend, savings, routing mix and reasons, quality, latency and recent decisions over ``window``
    for ``tenant`` (absent = every tenant; empty = requests without a tenant), and the budgets in force
    in their current window (``budgets``: other tenants' budgets left out when ``tenant`` is given)."""
    return _json(await run_cpu(services, overview, services, _window(window), tenant))


@router.get("/dashboard/api/ab", dependencies=Dashboard)
async def ab_api(services: ServicesDep, window: WindowQ = "day") -> JSONResponse:
    """The served A/B experiment's report over ``window`` (every tenant)."""
    return _json(await run_cpu(services, ab_panel, services, _window(window)))


REGISTRY_TIMEOUT_S = 10.0


@router.get("/dashboard/api/registry", dependencies=Dashboard)
async def registry_api(services: ServicesDep) -> JSONResponse:
    """The served router version and the registry's versions (when served from the registry). An MLflow
    that does not answer within ``REGISTRY_TIMEOUT_S`` gets a note, not a hanging page."""
    try:
        return _json(await asyncio.wait_for(run_cpu(services, registry_panel, services), REGISTRY_TIMEOUT_S))
    except TimeoutError:
        served = services.holder.served
        return _json({"model": services.settings.model, "router_version": served.router.version if served else None,
                      "versions": [], "note": f"the registry did not answer within {REGISTRY_TIMEOUT_S:g} s"})
