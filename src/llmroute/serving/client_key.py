"""The API key id a request spends under (for per-key budgets), as a request dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from llmroute.budgets.spec import key_id
from llmroute.serving.deps import presented_key


async def client_key_id(
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str | None:
    """:func:`llmroute.budgets.spec.key_id` of the key the request presents (None without one)."""
    key = presented_key(authorization, x_api_key)
    return key_id(key) if key else None


KeyIdDep = Annotated[str | None, Depends(client_key_id)]
