"""The predictor's response bodies, written in one place: JSON with orjson, and the Open
Inference Protocol's `{"error": "..."}` for every failure (status from services/problems.py)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

from core.errors import KilnError
from services.problems import retry_after, status_of


def json_response(content: Any, status_code: int = 200) -> Response:
    # Serialised here rather than by FastAPI's encoder, which walks every float in Python.
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def error(exc: BaseException) -> tuple[int, bytes]:
    """The status and body for what a request raised. Anything but a domain error is the
    server's fault, answered without details."""
    if isinstance(exc, KilnError):
        return status_of(exc), error_body(exc.message)
    return 500, error_body("internal server error")


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def error_response(exc: BaseException, status: int | None = None) -> Response:
    """The error answer for ``exc``, with another status than its kind's if given."""
    code, body = error(exc)
    response = Response(body, status_code=status or code, media_type="application/json")
    wait = retry_after(exc) if isinstance(exc, KilnError) else None
    if wait is not None:
        response.headers["retry-after"] = wait
    return response
