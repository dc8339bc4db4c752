"""One table from error code to HTTP status, and one handler that writes RFC 9457 problem+json.

Routes never build error bodies by hand: they raise a domain error (registry, training
spec) or a ServiceError, and this module turns it into a response.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from registry.errors import RegistryError
from training.spec import SpecDataMismatch

STATUS_BY_CODE: dict[str, int] = {
    "not_found": 404,
    "dataset_not_found": 404,
    "job_not_found": 404,
    "model_not_found": 404,
    "version_not_found": 404,
    "artifact_missing": 404,
    "artifact_corrupt": 500,
    "conflict": 409,
    "invalid_state": 409,
    "spec_data_mismatch": 422,
    "request_invalid": 422,
    "unsupported_media_type": 415,
    "upload_empty": 422,
    "upload_not_csv": 422,
    "target_missing": 422,
    "non_numeric_features": 422,
    "missing_values": 422,
    "upload_not_npz": 422,
    "images_invalid": 422,
    "upload_too_large": 413,
    "unknown_builtin_dataset": 404,
    "artifact_store_unavailable": 503,
    "alias_not_found": 404,
    "alias_invalid": 422,
    "no_previous_version": 409,
    "version_in_use": 409,
    "tag_invalid": 422,
    "tag_not_found": 404,
    "metric_unknown": 422,
    "versions_invalid": 422,
}

PROBLEM_JSON = "application/problem+json"


class ServiceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Problem(BaseModel):
    """RFC 9457 problem details. `errors` lists field problems for request validation."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problem_response(
    code: str, detail: str, *, errors: list[dict[str, Any]] | None = None
) -> JSONResponse:
    status = STATUS_BY_CODE.get(code, 500)
    body = Problem(
        type=f"https://kiln.dev/problems/{code.replace('_', '-')}",
        title=code.replace("_", " ").capitalize(),
        status=status,
        detail=detail,
        code=code,
        errors=errors,
    )
    return JSONResponse(
        jsonable_encoder(body, exclude_none=True), status_code=status, media_type=PROBLEM_JSON
    )


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, RegistryError | ServiceError):
        return problem_response(exc.code, exc.message)
    if isinstance(exc, SpecDataMismatch):
        return problem_response(exc.code, str(exc))
    raise exc


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors)
    return problem_response("request_invalid", f"the request is invalid: {summary}", errors=errors)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RegistryError, _domain_error)
    app.add_exception_handler(ServiceError, _domain_error)
    app.add_exception_handler(SpecDataMismatch, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Not found", "content": {PROBLEM_JSON: {}}},
    409: {"model": Problem, "description": "Conflict", "content": {PROBLEM_JSON: {}}},
    422: {"model": Problem, "description": "Invalid request", "content": {PROBLEM_JSON: {}}},
}
