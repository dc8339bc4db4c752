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


class FieldProblem(BaseModel):
    """One field of the request that breaks a rule: where (`["body", "spec", "epochs"]`),
    what, and pydantic's name for the rule."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details. `code` names the error; `errors` lists field problems
    for request validation; `figures` holds the numbers behind a refusal that has them
    (a refused promotion gate's means, difference and p-value)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None
    figures: dict[str, Any] | None = None


def problem_response(
    code: str,
    detail: str,
    status: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    figures: dict[str, Any] | None = None,
) -> JSONResponse:
    body = Problem(
        type=f"https://kiln.dev/problems/{code.replace('_', '-')}",
        title=code.replace("_", " ").capitalize(),
        status=status,
        detail=detail,
        code=code,
        errors=errors,
        figures=figures,
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
    return problem_response(
        exc.code, exc.message, status_of(exc), headers=headers, figures=exc.figures
    )


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


# What each status means on the API, as its OpenAPI document says (`responses`).
_MEANING: dict[int, str] = {
    400: "The body cannot be read: not JSON, or a malformed form",
    401: "No API key, or one that is not known",
    403: "The key lacks the scope or the model; or a browser on another site sent it",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "A quota or rate limit; Retry-After says when to try again",
    500: "Stored data is damaged",
    503: "The registry database or the artifact store does not answer; Retry-After says "
    "when to try again",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the same request again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def responses(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """The problem+json answers a route can give besides the ones every operation of its
    kind shares (`document`): `responses=problems.responses(404, 409)`. ``meanings``
    (`_409="the job has ended"`) replaces a status's description."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": meanings.get(f"_{status}", _MEANING[status]),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in (429, 503):
            answer["headers"] = _RETRY_AFTER
        out[status] = answer
    return out


def document(openapi: dict[str, Any]) -> None:
    """Finish the API's OpenAPI document (services/openapi.py): the Problem schema, and on
    every operation the answers it has because of its shape: 401, 403 and 503 (the key
    ring and the registry) where keys are checked; 422 where it takes parameters or a
    body (in place of FastAPI's own HTTPValidationError, which Kiln never sends); 400 and
    413 where it takes a body (not JSON, a malformed form, or over MAX_UPLOAD_BYTES)."""
    from services.openapi import add_models, operations

    add_models(openapi, [Problem])
    for _method, _path, op in operations(openapi):
        shared: list[int] = []
        if op.get("security"):
            shared += [401, 403, 503]
        if op.get("parameters") or op.get("requestBody"):
            shared.append(422)
        if op.get("requestBody"):
            shared += [400, 413]
        answers = op.setdefault("responses", {})
        for status, answer in responses(*shared).items():
            answers.setdefault(str(status), answer)
        op["responses"] = dict(sorted(answers.items()))
