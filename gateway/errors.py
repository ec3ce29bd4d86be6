"""Errors at the gateway's one boundary: the OGC API exception body (RFC 7807).

Domain exceptions are mapped to status codes in one table; every error answer, including
FastAPI's own (bad query, unknown route), has the ``{type, title, status, detail}`` body the
OGC API - Processes schema ``exception.yaml`` describes.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geomlops.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    GeomlopsError,
    NotFoundError,
    StackNotRunning,
    ValidationFailed,
)

log = logging.getLogger(__name__)

OGC_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
NO_SUCH_PROCESS = OGC_EXCEPTIONS + "no-such-process"
NO_SUCH_JOB = OGC_EXCEPTIONS + "no-such-job"
RESULT_NOT_READY = OGC_EXCEPTIONS + "result-not-ready"
HTTP_STATUS = "https://httpwg.org/specs/rfc9110.html#status."

STATUS_OF: tuple[tuple[type[GeomlopsError], int], ...] = (
    (NotFoundError, 404),
    (ValidationFailed, 400),
    (ConflictError, 409),
    (StackNotRunning, 503),
    (ConfigError, 503),
    (AuthError, 403),
    (GeomlopsError, 500),
)
"""Domain exception → HTTP status; the first matching class wins (subclasses first)."""


class OgcError(Exception):
    """An error answer: status, the exception type URI, a title and what to do."""

    def __init__(self, status: int, title: str, detail: str, type_: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or f"{HTTP_STATUS}{status}"

    def body(self, instance: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        return body


def from_domain(exc: GeomlopsError) -> OgcError:
    """The answer for a domain exception (message, hint and every problem in the detail)."""
    status = next(code for cls, code in STATUS_OF if isinstance(exc, cls))
    detail = exc.message
    problems = getattr(exc, "problems", None)
    if problems:
        detail += ": " + "; ".join(problems)
    if exc.hint:
        detail += f" (hint: {exc.hint})"
    return OgcError(status, type(exc).__name__, detail)


def _answer(request: Request, error: OgcError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="geomlops"'} if error.status == 401 else None
    return JSONResponse(error.body(request.url.path), status_code=error.status, headers=headers)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with the exception body."""

    @app.exception_handler(OgcError)
    async def ogc(request: Request, exc: OgcError) -> JSONResponse:
        return _answer(request, exc)

    @app.exception_handler(GeomlopsError)
    async def domain(request: Request, exc: GeomlopsError) -> JSONResponse:
        return _answer(request, from_domain(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return _answer(request, OgcError(400, "InvalidParameterValue", "; ".join(problems)))

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _answer(request, OgcError(exc.status_code, "HTTPError", str(exc.detail)))
