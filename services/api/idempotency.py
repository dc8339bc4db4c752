"""`Idempotency-Key` on submissions: the same key and body get the first answer again;
the same key with another body is a 409 (docs/decisions/0018).

The key is claimed before the work runs, in a transaction of its own, so two copies of
one request sent at once cannot both submit: the second finds the claim and is told to
retry (409 with Retry-After) until the first has its answer. A submission that fails
gives the claim back, so the client can send it again.

Records are kept for IDEMPOTENCY_KEY_TTL_S (a day, as Stripe keeps its keys), then the
sweeper removes them (`expire`). A claim whose request never answered (its API process
died mid-request) is removed after STALE_CLAIM_S, so the client's retry under the same
key is not told "still being processed" for ever.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Header
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import and_, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.models import IdempotencyRecord
from services.api.errors import IdempotencyKeyInProgress, IdempotencyKeyReused

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): sending the same request again with it "
        "returns the first answer instead of submitting twice.",
    ),
]
_IN_PROGRESS = 0
# Far longer than any submission takes (an upload of the largest file allowed included).
STALE_CLAIM_S = 900.0


def fingerprint(*parts: Any) -> str:
    """The sha256 of a request's meaningful content (its parsed body, file bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode()
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def once(
    sm: sessionmaker[Session],
    *,
    key: str | None,
    owner: str | None,
    operation: str,
    request: str,
    status: int,
    run: Callable[[], BaseModel],
    headers: Callable[[dict[str, Any]], dict[str, str]] = lambda _body: {},
) -> BaseModel | JSONResponse:
    """``run()``'s answer, or with ``key`` the first answer given to it again.

    ``request`` is the request's fingerprint; ``headers`` makes a replayed answer's
    headers (a Location) from its body."""
    if key is None:
        return run()
    who = owner or "anonymous"
    ident = {"owner": who, "key": key, "operation": operation}
    first = _claim(sm, ident, request)
    if first is not None:
        return JSONResponse(
            first.response, status_code=first.status, headers=headers(first.response)
        )
    try:
        answer = run()
    except BaseException:
        with sm() as session:
            session.execute(delete(IdempotencyRecord).filter_by(**ident))
            session.commit()
        raise
    with sm() as session:
        session.execute(
            update(IdempotencyRecord)
            .filter_by(**ident)
            .values(status=status, response=jsonable_encoder(answer))
        )
        session.commit()
    return answer


def expire(session: Session, *, now: datetime, ttl_s: float) -> int:
    """Remove answers older than ``ttl_s`` and claims stale for STALE_CLAIM_S; how many."""
    answered_before = now - timedelta(seconds=ttl_s)
    claimed_before = now - timedelta(seconds=min(ttl_s, STALE_CLAIM_S))
    gone = session.execute(
        delete(IdempotencyRecord).where(
            or_(
                IdempotencyRecord.created_at < answered_before,
                and_(
                    IdempotencyRecord.status == _IN_PROGRESS,
                    IdempotencyRecord.created_at < claimed_before,
                ),
            )
        )
    )
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]


def _claim(
    sm: sessionmaker[Session], ident: dict[str, str], request: str
) -> IdempotencyRecord | None:
    """Claim the key (None), or the record of the request that claimed it first."""
    with sm() as session:
        try:
            session.add(
                IdempotencyRecord(**ident, request_sha256=request, status=_IN_PROGRESS, response={})
            )
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
        first = session.get(IdempotencyRecord, (ident["owner"], ident["key"], ident["operation"]))
    if first is None:  # given back between the two statements: the caller may retry
        raise IdempotencyKeyInProgress(_busy(ident["key"]), retry_after_s=1)
    if first.request_sha256 != request:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {ident['key']!r} was used for a different request; use a new "
            "key for a new request"
        )
    if first.status == _IN_PROGRESS:
        raise IdempotencyKeyInProgress(_busy(ident["key"]), retry_after_s=1)
    return first


def _busy(key: str) -> str:
    return f"a request with Idempotency-Key {key!r} is still being processed; retry shortly"
