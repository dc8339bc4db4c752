"""Changes to registered models and versions: descriptions, tags, aliases, archive, delete.

Each is one registry call and one commit; this is where checks that span them (who may
move `production`, whether a candidate beats the version it replaces) belong.
"""

from __future__ import annotations

import functools
from typing import TypeVar

from sqlalchemy.orm import Session

from registry import aliases, tags, versions
from registry.artifacts import ArtifactStore
from registry.models import AliasEvent, ModelVersion, RegisteredModel
from services.api import gates
from services.api.alias_schemas import AliasRollback, AliasSet

T = TypeVar("T")


def _committed(session: Session, result: T) -> T:
    """Commit what the registry call before it changed; give back what it returned."""
    session.commit()
    return result


def describe_model(session: Session, *, name: str, description: str | None) -> RegisteredModel:
    model = versions.set_model_description(session, model_name=name, description=description)
    return _committed(session, model)


def describe_version(
    session: Session, *, name: str, version: int, description: str | None
) -> ModelVersion:
    mv = versions.set_version_description(
        session, model_name=name, version=version, description=description
    )
    return _committed(session, mv)


def tag(
    session: Session, *, name: str, key: str, value: str | None, version: int | None = None
) -> dict[str, str]:
    """Set the tag (``value`` None: remove it) on the model, or on one of its versions;
    return all of that model's or version's tags."""
    if version is None:
        result = (
            tags.delete_model_tag(session, model_name=name, key=key)
            if value is None
            else tags.set_model_tag(session, model_name=name, key=key, value=value)
        )
    elif value is None:
        result = tags.delete_version_tag(session, model_name=name, version=version, key=key)
    else:
        result = tags.set_version_tag(
            session, model_name=name, version=version, key=key, value=value
        )
    return _committed(session, result)


def set_alias(
    session: Session,
    store: ArtifactStore,
    *,
    name: str,
    alias: str,
    body: AliasSet,
    actor: str | None,
) -> AliasEvent:
    rule = body.gate
    return _committed(
        session,
        aliases.set_alias(
            session,
            model_name=name,
            alias=alias,
            version=body.version,
            actor=actor,
            reason=body.reason,
            gate=None if rule is None else functools.partial(gates.check, rule, store=store),
        ),
    )


def delete_alias(
    session: Session, *, name: str, alias: str, actor: str | None, reason: str | None
) -> AliasEvent:
    return _committed(
        session,
        aliases.delete_alias(session, model_name=name, alias=alias, actor=actor, reason=reason),
    )


def rollback_alias(
    session: Session, *, name: str, alias: str, body: AliasRollback, actor: str | None
) -> AliasEvent:
    to = None if body.to == "previous" else body.to
    return _committed(
        session,
        aliases.rollback(
            session, model_name=name, alias=alias, to=to, actor=actor, reason=body.reason
        ),
    )


def archive(session: Session, *, name: str, version: int, archived: bool) -> ModelVersion:
    mv = versions.archive_version(session, model_name=name, version=version, archived=archived)
    return _committed(session, mv)


def delete_version(session: Session, *, name: str, version: int) -> None:
    """Delete the version; the files nothing else uses are removed by the sweeper later
    (registry.orphans), never under a worker that stores the same bytes."""
    _committed(session, versions.delete_version(session, model_name=name, version=version))
