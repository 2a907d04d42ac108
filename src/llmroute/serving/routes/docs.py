"""``GET /docs``, ``/redoc`` and ``/openapi.json``: the API description, behind a key unless ``open_docs``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from llmroute.serving.deps import Authenticated


def docs_router(open_docs: bool) -> APIRouter:
    """The three documentation routes; they need a client or admin key unless ``open_docs``."""
    router = APIRouter(tags=["docs"], dependencies=[] if open_docs else Authenticated, include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    @router.get("/docs")
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="llmroute - API")

    @router.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="llmroute - API")

    return router
