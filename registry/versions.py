"""Registered models and their numbered versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.errors import Conflict, ModelNotFound, VersionNotFound
from registry.models import FoldMetric, ModelVersion, RegisteredModel

_VERSION_RETRIES = 5


def get_model(session: Session, *, name: str) -> RegisteredModel:
    model = session.scalars(select(RegisteredModel).where(RegisteredModel.name == name)).first()
    if model is None:
        raise ModelNotFound(f"no model named {name!r}")
    return model


def list_models(
    session: Session, *, limit: int = 100, offset: int = 0
) -> Sequence[RegisteredModel]:
    return session.scalars(
        select(RegisteredModel).order_by(RegisteredModel.name).limit(limit).offset(offset)
    ).all()


def latest_version_number(session: Session, *, model_id: int) -> int | None:
    return session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.registered_model_id == model_id)
    )


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


def fold_metrics(session: Session, *, job_id: str) -> Sequence[FoldMetric]:
    return session.scalars(
        select(FoldMetric).where(FoldMetric.job_id == job_id).order_by(FoldMetric.fold)
    ).all()


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


def register_version(
    session: Session,
    *,
    model_name: str,
    job_id: str,
    dataset_id: str,
    spec: dict[str, Any],
    metrics: dict[str, dict[str, float]],
    parity: dict[str, Any],
    signature: dict[str, Any],
    onnx_sha256: str,
    onnx_size_bytes: int,
    keras_sha256: str,
    library_versions: dict[str, str],
    device: str,
    retrained_from_id: int | None = None,
    test_metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """Add the next version of `model_name`; idempotent per job (a redelivery returns it again).

    Version numbers come from max+1 under the unique (model, version) constraint and a
    short retry, which works on SQLite too (no SELECT ... FOR UPDATE there).
    """
    existing = session.scalars(select(ModelVersion).where(ModelVersion.job_id == job_id)).first()
    if existing is not None:
        return existing
    model = _get_or_create_model(session, model_name)
    for _ in range(_VERSION_RETRIES):
        number = (latest_version_number(session, model_id=model.id) or 0) + 1
        try:
            with session.begin_nested():
                version = ModelVersion(
                    registered_model_id=model.id,
                    version=number,
                    job_id=job_id,
                    dataset_id=dataset_id,
                    spec=spec,
                    metrics=metrics,
                    parity=parity,
                    signature=signature,
                    onnx_sha256=onnx_sha256,
                    onnx_size_bytes=onnx_size_bytes,
                    keras_sha256=keras_sha256,
                    library_versions=library_versions,
                    device=device,
                    retrained_from_id=retrained_from_id,
                    test_metrics=test_metrics,
                )
                session.add(version)
        except IntegrityError:
            again = session.scalars(
                select(ModelVersion).where(ModelVersion.job_id == job_id)
            ).first()
            if again is not None:
                return again
            continue
        return version
    raise Conflict(
        f"could not allocate a version number for model {model_name!r} after "
        f"{_VERSION_RETRIES} tries; too many concurrent registrations, try again"
    )
