"""Error responses: one JSON shape ``{"error": {"type", "message", ...}}``, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmroute.router.decision import NoEligibleModelError
from llmroute.router.eligibility import only_unavailable

log = logging.getLogger("llmroute.serving")


class ServiceError(Exception):
    """An error the client should see, with its HTTP status."""

    def __init__(
        self, status: int, type_: str, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers
        self.extra = extra


def error_body(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **extra}}


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{_location(tuple(err.get('loc', ())))}: {msg}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"loc": _location(tuple(e.get("loc", ()))), "msg": str(e.get("msg", "")).removeprefix("Value error, ")}
            for e in exc.errors()
        ]
        return JSONResponse(error_body("invalid_request", validation_message(exc), fields=fields), status_code=422)

    @app.exception_handler(NoEligibleModelError)
    async def _no_eligible(request: Request, exc: NoEligibleModelError) -> JSONResponse:
        if only_unavailable(exc.reasons):  # some model would do once it is healthy again: try later
            return JSONResponse(
                error_body("no_available_model", str(exc), reasons=exc.reasons), status_code=503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse(
            error_body("no_eligible_model", str(exc), reasons=exc.reasons), status_code=422
        )

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.type, exc.message, **exc.extra), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body("http_error", str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
    # unexpected exceptions: serving.middleware.CatchAll (a handler here would re-raise and drop keep-alive)
