"""Free-form key/value tags on a model or on one of its versions."""

from __future__ import annotations

import re
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from registry.errors import TagInvalid, TagNotFound
from registry.models import ModelTag, VersionTag
from registry.versions import get_model, get_version

TAG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
MAX_TAG_VALUE = 5000


def check_tag(key: str, value: str | None = None) -> None:
    if not TAG_KEY_PATTERN.fullmatch(key):
        raise TagInvalid(
            f"tag key {key!r} is not valid: use 1 to 250 letters, digits, '_', '.' or '-'"
        )
    if value is not None and len(value) > MAX_TAG_VALUE:
        raise TagInvalid(
            f"the value of tag {key!r} has {len(value)} characters; at most {MAX_TAG_VALUE}"
        )


def model_tags(session: Session, *, model_id: int) -> dict[str, str]:
    rows = session.scalars(
        select(ModelTag).where(ModelTag.registered_model_id == model_id).order_by(ModelTag.key)
    )
    return {r.key: r.value for r in rows}


def version_tags(session: Session, *, version_id: int) -> dict[str, str]:
    rows = session.scalars(
        select(VersionTag).where(VersionTag.model_version_id == version_id).order_by(VersionTag.key)
    )
    return {r.key: r.value for r in rows}


def set_model_tag(session: Session, *, model_name: str, key: str, value: str) -> dict[str, str]:
    """Set (or change) one tag of the model; return all of its tags."""
    check_tag(key, value)
    model = get_model(session, name=model_name)
    _upsert(session, ModelTag, ModelTag.registered_model_id, model.id, key, value)
    return model_tags(session, model_id=model.id)


def delete_model_tag(session: Session, *, model_name: str, key: str) -> dict[str, str]:
    model = get_model(session, name=model_name)
    if not _delete(session, ModelTag, ModelTag.registered_model_id, model.id, key):
        raise TagNotFound(f"model {model_name!r} has no tag {key!r}")
    return model_tags(session, model_id=model.id)


def set_version_tag(
    session: Session, *, model_name: str, version: int, key: str, value: str
) -> dict[str, str]:
    """Set (or change) one tag of the version; return all of its tags."""
    check_tag(key, value)
    mv = get_version(session, model_name=model_name, version=version)
    _upsert(session, VersionTag, VersionTag.model_version_id, mv.id, key, value)
    return version_tags(session, version_id=mv.id)


def delete_version_tag(
    session: Session, *, model_name: str, version: int, key: str
) -> dict[str, str]:
    mv = get_version(session, model_name=model_name, version=version)
    if not _delete(session, VersionTag, VersionTag.model_version_id, mv.id, key):
        raise TagNotFound(f"version {version} of model {model_name!r} has no tag {key!r}")
    return version_tags(session, version_id=mv.id)


Owner = InstrumentedAttribute[int]


def _find(
    session: Session, table: type[ModelTag | VersionTag], owner: Owner, owner_id: int, key: str
) -> ModelTag | VersionTag | None:
    found = session.scalars(select(table).where(owner == owner_id, table.key == key)).first()
    return cast(ModelTag | VersionTag | None, found)


def _upsert(
    session: Session,
    table: type[ModelTag | VersionTag],
    owner: Owner,
    owner_id: int,
    key: str,
    value: str,
) -> None:
    row = _find(session, table, owner, owner_id, key)
    if row is None:
        session.add(table(**{owner.key: owner_id, "key": key, "value": value}))
    else:
        row.value = value
    session.flush()


def _delete(
    session: Session, table: type[ModelTag | VersionTag], owner: Owner, owner_id: int, key: str
) -> bool:
    row = _find(session, table, owner, owner_id, key)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
