"""Registered models and their numbered versions: register, read, describe, archive, delete."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry import orphans
from registry.db import utcnow
from registry.errors import ModelNotFound, VersionInUse, VersionNotFound
from registry.models import Alias, ModelVersion, RegisteredModel, TrainingJob, VersionTag


def get_model(session: Session, *, name: str) -> RegisteredModel:
    model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == name)).first()
    if model is None:
        raise ModelNotFound(f"no model named {name!r}")
    return model


def lock_model(session: Session, *, name: str) -> RegisteredModel:
    """The model row, locked against concurrent alias changes until the transaction ends.

    PostgreSQL: `SELECT … FOR NO KEY UPDATE`, which does not block version registration
    (a key-share lock on the model row). SQLite has no row locks: a no-op UPDATE of the
    model row takes the database's write lock; as the first write of the transaction,
    SQLite waits for it (busy_timeout) with a fresh snapshot, so the reads that follow see
    every committed change.
    """
    model = get_model(session, name=name)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(RegisteredModel.id)
            .where(RegisteredModel.id == model.id)
            .with_for_update(key_share=True)
        )
    else:
        session.execute(
            update(RegisteredModel)
            .where(RegisteredModel.id == model.id)
            .values(name=RegisteredModel.name)
            .execution_options(synchronize_session=False)
        )
    return model


def list_versions(session: Session, *, model_name: str) -> Sequence[ModelVersion]:
    model = get_model(session, name=model_name)
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.registered_model_id == model.id)
        .order_by(ModelVersion.version)
    ).all()


def get_version(session: Session, *, model_name: str, version: int | None = None) -> ModelVersion:
    """The given version of a model, or its newest when `version` is None."""
    model = get_model(session, name=model_name)
    query = select(ModelVersion).where(ModelVersion.registered_model_id == model.id)
    if version is None:
        query = query.order_by(ModelVersion.version.desc()).limit(1)
    else:
        query = query.where(ModelVersion.version == version)
    found = session.scalars(query).first()
    if found is None:
        numbers = [v.version for v in model.versions]
        if version is None:
            raise VersionNotFound(f"model {model_name!r} has no versions yet")
        raise VersionNotFound(
            f"model {model_name!r} has no version {version}; it has versions {numbers}"
        )
    return found


def _get_or_create_model(session: Session, name: str) -> RegisteredModel:
    existing = session.scalars(select(RegisteredModel).where(RegisteredModel.name == name)).first()
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            model = RegisteredModel(name=name)
            session.add(model)
    except IntegrityError:
        # Another job registered the first version of this model at the same moment.
        return get_model(session, name=name)
    return model


def register_version(session: Session, *, model_name: str, row: ModelVersion) -> ModelVersion:
    """Add ``row`` (every field but its model and number) as the next version of
    ``model_name``; idempotent per job: a redelivered job gets the version it registered.

    The number comes from the model's counter (`last_version`), raised in one UPDATE that
    holds the model row until the transaction ends: concurrent registrations take turns,
    and a deleted version's number is never given again.
    """
    registered = select(ModelVersion).where(ModelVersion.job_id == row.job_id)
    existing = session.scalars(registered).first()
    if existing is not None:
        return existing
    model = _get_or_create_model(session, model_name)
    number = session.scalar(
        update(RegisteredModel)
        .where(RegisteredModel.id == model.id)
        .values(last_version=RegisteredModel.last_version + 1)
        .returning(RegisteredModel.last_version)
        .execution_options(synchronize_session=False)
    )
    assert number is not None  # the row exists: it was read or made above
    # The same job may have registered while this one waited for the row.
    again = session.scalars(registered).first()
    if again is not None:
        return again
    row.registered_model_id = model.id
    row.version = number
    session.add(row)
    session.flush()
    return row


def set_model_description(
    session: Session, *, model_name: str, description: str | None
) -> RegisteredModel:
    model = get_model(session, name=model_name)
    model.description = description
    session.flush()
    return model


def set_version_description(
    session: Session, *, model_name: str, version: int, description: str | None
) -> ModelVersion:
    mv = get_version(session, model_name=model_name, version=version)
    mv.description = description
    session.flush()
    return mv


def archive_version(
    session: Session, *, model_name: str, version: int, archived: bool = True
) -> ModelVersion:
    """Archive (or unarchive) a version: kept on disk and servable by number or alias,
    but never served as the model's newest version."""
    mv = get_version(session, model_name=model_name, version=version)
    if archived and mv.archived_at is None:
        mv.archived_at = utcnow()
    elif not archived:
        mv.archived_at = None
    session.flush()
    return mv


def delete_version(session: Session, *, model_name: str, version: int) -> list[str]:
    """Delete a version no alias points at; return the artifact hashes it leaves orphaned.

    Its files are only marked here: the sweeper removes them later, if nothing refers to
    them by then (registry.orphans). Versions and jobs that were retrained from this one
    keep their own lineage but lose the link (`retrained_from` becomes null); the version
    number is never reused.
    """
    # The alias lock: an alias cannot be pointed at this version while it is deleted.
    lock_model(session, name=model_name)
    mv = get_version(session, model_name=model_name, version=version)
    pointing = session.scalars(
        select(Alias.name).where(Alias.model_version_id == mv.id).order_by(Alias.name)
    ).all()
    if pointing:
        raise VersionInUse(
            f"version {version} of model {model_name!r} cannot be deleted: alias(es) "
            f"{list(pointing)} point at it; move or delete them first"
        )
    files = (
        mv.onnx_sha256,
        mv.keras_sha256,
        mv.report_sha256,
        mv.predictions_sha256,
        mv.profile_sha256,
    )
    hashes = {h for h in files if h is not None}
    for table in (ModelVersion, TrainingJob):
        session.execute(
            update(table)
            .where(table.retrained_from_id == mv.id)
            .values(retrained_from_id=None)
            .execution_options(synchronize_session=False)
        )
    session.execute(delete(VersionTag).where(VersionTag.model_version_id == mv.id))
    session.delete(mv)
    session.flush()
    return orphans.mark(session, hashes)
