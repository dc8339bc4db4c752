"""Make and revoke API keys (the admin routes; `kiln keys bootstrap` makes the first)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry import keys
from registry.models import ApiKey
from services.api.schemas import KeyCreate


def create(session: Session, body: KeyCreate, *, created_by: str) -> tuple[ApiKey, str]:
    key, token = keys.create_key(
        session, owner=body.owner, scopes=body.scopes, models=body.models, created_by=created_by
    )
    session.commit()
    return key, token


def revoke(session: Session, *, key_id: str) -> ApiKey:
    key = keys.revoke_key(session, key_id=key_id)
    session.commit()
    return key
