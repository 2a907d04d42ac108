"""``/admin/budgets``: list, create or replace, and delete budgets (admin key).

* ``GET /admin/budgets``: every budget with its current window, spend, share, forecast and source
  (``file`` or ``api``); ``GET /admin/budgets/{name}``: one.
* ``PUT /admin/budgets/{name}``: the budget's fields as JSON (those of a budget file entry, see
  :mod:`llmroute.budgets.spec`; ``name`` comes from the path). 422 names the bad field; 409 when another
  budget already covers the same subject and window. Stored in the decision-log database: every
  process and replica applies it within ``budget_refresh_s``.
* ``DELETE /admin/budgets/{name}``: 404 when there is no such budget. A budget from the budget file
  comes back with the file's next change (the file is the source of truth for its budgets).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from llmroute.budgets.spec import BudgetFileError
from llmroute.serving.budget_control import BudgetControl
from llmroute.serving.deps import AdminOnly, ServicesDep
from llmroute.serving.errors import ServiceError
from llmroute.serving.state import Services

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=AdminOnly)


def _control(services: Services) -> BudgetControl:
    if services.budgets is None:
        raise ServiceError(503, "budgets_off", "budgets need the decision log, and this service runs without one")
    return services.budgets


@router.get("/budgets")
async def list_budgets(services: ServicesDep) -> dict[str, Any]:
    control = _control(services)
    return {"budgets": [control.describe(s) for s in sorted(control.specs.values(), key=lambda s: s.name)],
            "file": control.file, "file_error": control.last_error}


@router.get("/budgets/{name}")
async def get_budget(name: str, services: ServicesDep) -> dict[str, Any]:
    control = _control(services)
    if name not in control.specs:
        raise ServiceError(404, "unknown_budget", f"no budget named {name!r}")
    return control.describe(control.specs[name])


@router.put("/budgets/{name}")
async def put_budget(name: str, services: ServicesDep, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    control = _control(services)
    if "name" in body and body["name"] != name:
        raise ServiceError(422, "invalid_budget", f"request body, field 'name': {body['name']!r} differs from the path's {name!r}")
    try:
        spec = await run_in_threadpool(control.put, name, body)
    except BudgetFileError as exc:
        status, kind = (409, "duplicate_budget") if "duplicate budget" in str(exc) else (422, "invalid_budget")
        raise ServiceError(status, kind, str(exc)) from None
    return control.describe(spec)


@router.delete("/budgets/{name}")
async def delete_budget(name: str, services: ServicesDep) -> dict[str, Any]:
    control = _control(services)
    if not await run_in_threadpool(control.delete, name):
        raise ServiceError(404, "unknown_budget", f"no budget named {name!r}")
    return {"deleted": name}
