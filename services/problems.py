"""One table from error kind to HTTP status, and the API's RFC 9457 problem+json handler.

Routes never build error bodies by hand: they raise a domain error (core.errors and the
packages' own subclasses) and this module turns it into a response. The predictor uses
the same table for its `{"error": ...}` bodies (services/predict/serving.py).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.errors import ErrorKind, KilnError

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
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors)
    detail = f"the request is invalid: {summary}"
    return problem_response("request_invalid", detail, 422, errors=errors)


def install(app: FastAPI) -> None:
    app.add_exception_handler(KilnError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


def _documented(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {PROBLEM_JSON: {}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: _documented("Not found"),
    409: _documented("Conflict"),
    422: _documented("Invalid request"),
}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    413: _documented("Too large"),
    415: _documented("Unsupported media type"),
}
