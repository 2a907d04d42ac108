"""Request dependencies, declared once as ``Annotated`` aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from llmroute.router.router import Router
from llmroute.serving.errors import ServiceError
from llmroute.serving.state import Served, Services


async def get_services(request: Request) -> Services:
    services: Services = request.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_served(services: ServicesDep) -> Served:
    """The router and its response scorer, taken together once for the whole request."""
    served = services.holder.served
    if served is None:
        reason = services.holder.load_error or "the router is still loading"
        raise ServiceError(503, "router_not_ready", f"no router loaded: {reason}", headers={"Retry-After": "5"})
    return served


ServedDep = Annotated[Served, Depends(get_served)]


async def get_router(served: ServedDep) -> Router:
    """The router this request keeps for its whole life, even if a reload swaps in another."""
    return served.router


RouterDep = Annotated[Router, Depends(get_router)]


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents. One precedence: ``Authorization: Bearer KEY`` when that header is
    present (a stale ``X-API-Key`` never overrides it), else ``X-API-Key``."""
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return x_api_key


def _matches(given: str | None, keys: tuple[str, ...]) -> bool:
    if given is None:
        return False
    encoded = given.encode()
    # compare against every key (no early exit), each in constant time
    return any([secrets.compare_digest(encoded, k.encode()) for k in keys])  # noqa: C419 - a list: no early exit


def key_matches(given: str | None, keys: tuple[str, ...]) -> bool:
    """True when ``given`` is one of ``keys``; every key is compared, each in constant time."""
    return _matches(given, keys)


_UNAUTHORIZED = "missing or invalid API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"


async def require_api_key(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """A client route: any client or admin key, when keys are configured (none configured = auth off)."""
    check_client_key(services, presented_key(authorization, x_api_key))


def check_client_key(services: Services, presented: str | None) -> None:
    """401 ``unauthorized`` unless ``presented`` is a client or admin key; nothing when no key is configured."""
    settings = services.settings
    keys = settings.key_values() + settings.admin_key_values()
    if not keys:
        return
    if not _matches(presented, keys):
        raise ServiceError(401, "unauthorized", _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


async def require_admin_key(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """An admin route (``/admin/*``): only an admin key. With no keys of either kind configured, auth is
    off everywhere; with client keys but no admin keys, admin routes are closed to every key (403)."""
    settings = services.settings
    admin_keys = settings.admin_key_values()
    if not admin_keys and not settings.key_values():
        return
    given = presented_key(authorization, x_api_key)
    if _matches(given, admin_keys):
        return
    if _matches(given, settings.key_values()):
        detail = (
            "no admin key is configured (LLMROUTE_SERVE_ADMIN_API_KEYS), so admin routes are closed"
            if not admin_keys
            else "this route needs an admin key (LLMROUTE_SERVE_ADMIN_API_KEYS); a client key is not enough"
        )
        raise ServiceError(403, "forbidden", detail)
    raise ServiceError(401, "unauthorized", _UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


Authenticated = [Depends(require_api_key)]
AdminOnly = [Depends(require_admin_key)]
