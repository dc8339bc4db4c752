from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request, status

from core.access import Scope
from registry import keys
from registry.models import ApiKey
from services.api.auth import AdminCaller, needs
from services.api.deps import SessionDep
from services.api.schemas import KeyCreate, KeyCreated, KeyRead, Text
from services.api.usecases import keys as usecases
from services.problems import responses

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("", status_code=status.HTTP_201_CREATED, summary="Make an API key")
def create_key(
    request: Request, session: SessionDep, who: AdminCaller, body: KeyCreate
) -> KeyCreated:
    """The answer holds the token, once: store it where the key's user keeps secrets. It
    counts in this process at once, and in every other within `AUTH_KEY_REFRESH_S` (1 s by
    default)."""
    key, token = usecases.create(session, body, created_by=who.actor)
    request.app.state.keys.refresh()
    return KeyCreated.model_validate({**KeyRead.model_validate(key).model_dump(), "token": token})


@router.get(
    "", summary="List API keys", response_model=list[KeyRead], dependencies=[needs(Scope.ADMIN)]
)
def list_keys(session: SessionDep) -> Sequence[ApiKey]:
    return keys.list_keys(session)


@router.delete(
    "/{key_id}",
    summary="Revoke an API key",
    response_model=KeyRead,
    responses=responses(404),
    dependencies=[needs(Scope.ADMIN)],
)
def revoke_key(request: Request, session: SessionDep, key_id: Text) -> ApiKey:
    """Refused here at once and everywhere within `AUTH_KEY_REFRESH_S`; the row stays,
    for the record."""
    key = usecases.revoke(session, key_id=key_id)
    request.app.state.keys.refresh()
    return key
