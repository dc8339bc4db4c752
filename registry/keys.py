"""API keys: made (the token returned once), listed, revoked, and read as grants."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.access import TOKEN_PREFIX, Grant, KeyRing, Scope, hash_token
from registry.db import get_or_raise, utcnow
from registry.errors import KeyNotFound
from registry.models import ApiKey
from registry.settings import RegistrySettings

log = logging.getLogger("kiln.access")


def create_key(
    session: Session,
    *,
    owner: str,
    scopes: Iterable[Scope],
    models: Iterable[str] | None = None,
    created_by: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its token; only the token's hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        owner=owner,
        token_sha256=hash_token(token),
        prefix=token[: len(TOKEN_PREFIX) + 6],
        scopes=sorted({Scope(s) for s in scopes}),
        models=None if models is None else sorted(set(models)),
        created_by=created_by,
    )
    session.add(key)
    session.flush()
    return key, token


def list_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()


def revoke_key(session: Session, *, key_id: str) -> ApiKey:
    key = get_or_raise(session, ApiKey, key_id, KeyNotFound(f"no API key with id {key_id!r}"))
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def grants(session: Session) -> dict[str, Grant]:
    """Every key not revoked, by token hash (core.access.KeyRing reloads these)."""
    rows = session.execute(
        select(ApiKey.id, ApiKey.owner, ApiKey.token_sha256, ApiKey.scopes, ApiKey.models).where(
            ApiKey.revoked_at.is_(None)
        )
    )
    return {
        digest: Grant(
            key_id=key_id,
            owner=owner,
            scopes=frozenset(Scope(s) for s in scopes),
            models=None if models is None else frozenset(models),
        )
        for key_id, owner, digest, scopes, models in rows
    }


def key_ring(sm: sessionmaker[Session], settings: RegistrySettings) -> KeyRing:
    """The API keys as ``settings`` wants them checked; a Kiln that runs open says so."""

    def load() -> dict[str, Grant]:
        with sm() as session:
            return grants(session)

    if not settings.auth_required:
        log.warning(
            "KILN IS RUNNING OPEN: requests without an API key may read and change "
            "everything (KILN_AUTH=%s on %s). Set KILN_AUTH=required before anyone else "
            "can reach this port.",
            settings.kiln_auth,
            settings.database_url.partition(":")[0],
        )
    return KeyRing(load, max_age_s=settings.auth_key_refresh_s, required=settings.auth_required)
