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


async def require_api_key(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """Accept ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` when API keys are configured."""
    keys = services.settings.key_values()
    if not keys:
        return
    given = x_api_key
    if given is None and authorization is not None:
        scheme, _, token = authorization.partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if given is None or not any(secrets.compare_digest(given.encode(), k.encode()) for k in keys):
        raise ServiceError(
            401, "unauthorized", "missing or invalid API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authenticated = [Depends(require_api_key)]
