"""One error vocabulary: every domain error has a kind and a stable code.

The kind says what went wrong in terms a caller can act on; services/problems.py maps
each kind to one HTTP status. The code names the leaf error and goes into the response
body, so a client can tell `model_not_found` from `alias_not_found`. Nothing here knows
HTTP: the registry, training and the workers raise these too.

A package defines its errors as subclasses of KilnError, each naming its kind and its own
`code`; tests/unit/services/test_problems.py walks every such class and checks its status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorKind(StrEnum):
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    # Well-formed, but a rule refuses it (a spec that cannot train on the data).
    INVALID = "invalid"
    # Does not fit what the endpoint reads (an infer body of the wrong shape).
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_LARGE = "too_large"
    # No credentials, or credentials that are not valid.
    UNAUTHENTICATED = "unauthenticated"
    # Valid credentials that do not allow this.
    FORBIDDEN = "forbidden"
    # A quota or rate limit; `retry_after_s` says when to try again.
    TOO_MANY_REQUESTS = "too_many_requests"
    # A dependency cannot be reached now; the same request may succeed later.
    UNAVAILABLE = "unavailable"
    # Kiln's own fault, or stored data that is damaged.
    INTERNAL = "internal"


class KilnError(Exception):
    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        figures: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # When the same request may succeed (a Retry-After header); None: not known.
        self.retry_after_s = retry_after_s
        # The numbers behind the refusal, for a client to read rather than parse.
        self.figures = figures
