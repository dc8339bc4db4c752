"""Aliases (production, staging, any name) that point at one version of a model.

Every change — create, move, rollback, delete — is one AliasEvent row: alias, from-version,
to-version, actor, reason and time. Changes to the aliases of one model are serialised
by a lock on the model's row, taken before the alias is read, so `from_version` is
always what the alias really pointed at, and two clients moving the same alias at the
same moment leave one alias row and two history rows that chain (the second's `from` is
the first's `to`); `registry.versions.lock_model` says how on PostgreSQL and SQLite.

The insert race (both see no alias and both insert) cannot happen under that lock; the
unique (model, name) constraint and a retry stay as the backstop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.db import utcnow
from registry.errors import AliasContention, AliasInvalid, AliasNotFound, NoPreviousVersion
from registry.models import Alias, AliasEvent, ModelVersion, RegisteredModel
from registry.versions import get_model, get_version, lock_model

# Asked, under the model's lock, with the version the alias points at now (None for a new
# alias) and the target: the figures to record with the move, or it raises to refuse it.
Gate = Callable[[ModelVersion | None, ModelVersion], dict[str, Any] | None]

ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# `latest` means the newest version, `v3` would read as a version number, and
# `/aliases/history` is the history route.
RESERVED = re.compile(r"^(latest|history|v\d+)$")
_INSERT_RETRIES = 3


def check_alias_name(name: str) -> None:
    if not ALIAS_PATTERN.fullmatch(name):
        raise AliasInvalid(
            f"alias {name!r} is not valid: use 1 to 63 lowercase letters, digits, '-' or '_', "
            "starting with a letter (for example 'production' or 'staging')"
        )
    if RESERVED.match(name):
        raise AliasInvalid(
            f"alias {name!r} is reserved ('latest', 'history' and 'v<number>' mean something "
            "else in Kiln's URLs); choose another name"
        )


def _current(session: Session, model_id: int, alias: str) -> Alias | None:
    return session.scalars(
        select(Alias)
        .where(Alias.registered_model_id == model_id, Alias.name == alias)
        .execution_options(populate_existing=True)
    ).first()


def set_alias(
    session: Session,
    *,
    model_name: str,
    alias: str,
    version: int,
    actor: str | None = None,
    reason: str | None = None,
    gate: Gate | None = None,
) -> AliasEvent:
    """Point `alias` at `version` (create or move) and record the move; with ``gate``, only
    when the gate passes, checked against where the alias points under the model's lock."""
    check_alias_name(alias)
    model = lock_model(session, name=model_name)
    target = get_version(session, model_name=model_name, version=version)
    passed = None
    if gate is not None:
        now_at = _current(session, model.id, alias)
        passed = gate(
            None if now_at is None else session.get(ModelVersion, now_at.model_version_id), target
        )
    for _ in range(_INSERT_RETRIES):
        row = _current(session, model.id, alias)
        now = utcnow()
        if row is not None:
            from_version: int | None = row.version
            row.model_version_id = target.id
            row.updated_at = now
            session.flush()
            session.expire(row, ["version"])  # read again on use: it points elsewhere now
            break
        try:
            with session.begin_nested():
                session.add(
                    Alias(
                        registered_model_id=model.id,
                        name=alias,
                        model_version_id=target.id,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            continue  # another client created it first: read it and move it instead
        from_version = None
        break
    else:
        raise AliasContention(
            f"alias {alias!r} of model {model_name!r} kept changing under this request; try again"
        )
    return _record(
        session, model, alias, from_version, target.version, actor, reason, now, gate=passed
    )


def _record(
    session: Session,
    model: RegisteredModel,
    alias: str,
    from_version: int | None,
    to_version: int | None,
    actor: str | None,
    reason: str | None,
    at: datetime,
    *,
    gate: dict[str, Any] | None = None,
) -> AliasEvent:
    event = AliasEvent(
        registered_model_id=model.id,
        alias=alias,
        from_version=from_version,
        to_version=to_version,
        actor=actor,
        reason=reason,
        gate=gate,
        at=at,
    )
    session.add(event)
    session.flush()
    return event


def delete_alias(
    session: Session,
    *,
    model_name: str,
    alias: str,
    actor: str | None = None,
    reason: str | None = None,
) -> AliasEvent:
    model = lock_model(session, name=model_name)
    row = _current(session, model.id, alias)
    if row is None:
        raise AliasNotFound(_missing(session, model, alias))
    from_version = row.version
    session.delete(row)
    return _record(session, model, alias, from_version, None, actor, reason, utcnow())


def previous_version(session: Session, *, model_id: int, alias: str) -> int | None:
    """The version `alias` pointed at before its last change (None if it had none)."""
    last = session.scalars(
        select(AliasEvent)
        .where(AliasEvent.registered_model_id == model_id, AliasEvent.alias == alias)
        .order_by(AliasEvent.id.desc())
        .limit(1)
    ).first()
    return None if last is None else last.from_version


def rollback(
    session: Session,
    *,
    model_name: str,
    alias: str,
    to: int | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> AliasEvent:
    """Move `alias` back to version `to`, or (None) to where it pointed before its last move.

    A deleted alias can be rolled back too: its last move was the deletion, so `previous`
    restores the version it pointed at.
    """
    check_alias_name(alias)
    model = lock_model(session, name=model_name)
    current = _current(session, model.id, alias)
    has_history = session.scalar(
        select(AliasEvent.id)
        .where(AliasEvent.registered_model_id == model.id, AliasEvent.alias == alias)
        .limit(1)
    )
    if current is None and has_history is None:
        raise AliasNotFound(_missing(session, model, alias))
    if to is None:
        to = previous_version(session, model_id=model.id, alias=alias)
        if to is None:
            raise NoPreviousVersion(
                f"alias {alias!r} of model {model_name!r} has no previous version: it was "
                "created by its last change. Name the version to roll back to instead"
            )
    why = reason or f"rollback to version {to}"
    # set_alias takes the same lock again, which is a no-op within this transaction.
    return set_alias(
        session, model_name=model_name, alias=alias, version=to, actor=actor, reason=why
    )


def _missing(session: Session, model: RegisteredModel, alias: str) -> str:
    names = [a.name for a in list_aliases(session, model_name=model.name)]
    return f"model {model.name!r} has no alias {alias!r}; its aliases are {names}"


def get_alias(session: Session, *, model_name: str, alias: str) -> Alias:
    """The alias, with the number of the version it points at (`.version`)."""
    model = get_model(session, name=model_name)
    row = _current(session, model.id, alias)
    if row is None:
        raise AliasNotFound(_missing(session, model, alias))
    return row


def list_aliases(session: Session, *, model_name: str) -> Sequence[Alias]:
    """A model's aliases by name, each with the number of the version it points at."""
    model = get_model(session, name=model_name)
    return session.scalars(
        select(Alias).where(Alias.registered_model_id == model.id).order_by(Alias.name)
    ).all()


def alias_history(
    session: Session, *, model_name: str, alias: str | None = None, limit: int = 100
) -> Sequence[AliasEvent]:
    """The model's alias changes, newest first (one alias's when `alias` is given)."""
    model = get_model(session, name=model_name)
    query = select(AliasEvent).where(AliasEvent.registered_model_id == model.id)
    if alias is not None:
        query = query.where(AliasEvent.alias == alias)
    return session.scalars(query.order_by(AliasEvent.id.desc()).limit(limit)).all()
