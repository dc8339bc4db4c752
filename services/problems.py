"""One table from error kind to HTTP status, and the API's RFC 9457 problem+json handler.

Routes never build error bodies by hand: they raise a domain error (core.errors and the
packages' own subclasses) and this module turns it into a response. The predictor uses
the same table for its `{"error": ...}` bodies (services/predict/serving.py).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ErrorKind, KilnError
from core.text import printable

STATUS: dict[ErrorKind, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorKind.INVALID: 422,
    ErrorKind.TOO_MANY_REQUESTS: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UNAVAILABLE: 503,
}

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger("kiln.api")


def status_of(exc: KilnError) -> int:
    return STATUS[exc.kind]


def retry_after(exc: KilnError) -> str | None:
    """The Retry-After header's value (whole seconds, at least 1) when the error has one."""
    if exc.retry_after_s is None:
        return None
    return str(max(1, math.ceil(exc.retry_after_s)))


class Problem(BaseModel):
    """RFC 9457 problem details. `code` names the error; `errors` lists field problems
    for request validation."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problem_response(
    code: str,
    detail: str,
    status: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=f"https://kiln.dev/problems/{code.replace('_', '-')}",
        title=code.replace("_", " ").capitalize(),
        status=status,
        detail=detail,
        code=code,
        errors=errors,
    )
    return JSONResponse(
        jsonable_encoder(body, exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KilnError)
    wait = retry_after(exc)
    headers = {"Retry-After": wait} if wait is not None else None
    return problem_response(exc.code, exc.message, status_of(exc), headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    not_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if not_json:
        # Not a field that breaks a rule (422): the body cannot be read at all.
        where = not_json[0].get("ctx", {}).get("error", "") or not_json[0].get("msg", "")
        return problem_response(
            "body_not_json",
            f"the request body is not valid JSON ({where}); expected a JSON object, sent "
            "with Content-Type: application/json",
            400,
        )
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors)
    detail = f"the request is invalid: {summary}"
    return problem_response("request_invalid", detail, 422, errors=errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    # Starlette's own refusals: an unknown path, a method the path does not take, a
    # multipart body that cannot be parsed.
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(code, str(exc.detail), exc.status_code, headers=headers)


_HTTP_CODES = {400: "body_unreadable", 404: "route_not_found", 405: "method_not_allowed"}


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # Imported here: the predictor shares this module's table and never loads SQLAlchemy
    # for it.
    from registry.db import unavailable

    domain = unavailable(exc)
    if domain is None:
        raise exc  # a bug or a constraint, not an outage: a 500 as any other (below)
    cause = getattr(exc, "orig", None) or exc  # the driver's error, without the SQL
    # One line, no traceback: an outage answers many requests, and the traceback of a
    # refused connection says nothing the reason does not.
    log.warning(
        "%s %s answered 503: the registry database is not answering (%s: %s)",
        request.method,
        printable(request.url.path),
        type(cause).__name__,
        str(cause).strip().partition("\n")[0],
    )
    return await _domain_error(request, domain)


async def _unexpected_error(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette raises the exception again after this answer, and the server logs its
    # traceback (once); the client learns nothing of the internals.
    return problem_response("internal_error", "internal server error", 500)


def install(app: FastAPI) -> None:
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    app.add_exception_handler(KilnError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)


def _documented(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {PROBLEM_JSON: {}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("The body cannot be read: not JSON, or a malformed form"),
    404: _documented("Not found"),
    409: _documented("Conflict"),
    422: _documented("Invalid request"),
}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    413: _documented("Too large"),
    415: _documented("Unsupported media type"),
}
