"""Reads that return what an API view shows, in a constant number of queries.

A view of a version shows its tags, the aliases that point at it, its folds and the
version it was retrained from; a view of a job its events, folds and the version it
registered; a view of a model its versions, tags and aliases. The loader options below
fetch each of those for a whole page in one query, instead of one query per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.interfaces import ORMOption

from core.vocabulary import JobState
from registry.errors import JobNotFound
from registry.models import ModelVersion, RegisteredModel, TrainingJob
from registry.versions import get_model, get_version

VERSION_DETAILS = (
    selectinload(ModelVersion.tags),
    selectinload(ModelVersion.aliases),
    selectinload(ModelVersion.folds),
    selectinload(ModelVersion.retrained_from),
)
MODEL_DETAILS = (
    # Numbers only: not the version's dataset, which its relationship joins by default
    # (a page of 20 models read 60 datasets and decoded their JSON columns for nothing).
    selectinload(RegisteredModel.versions)
    .load_only(ModelVersion.version, ModelVersion.archived_at)
    .lazyload(ModelVersion.dataset),
    selectinload(RegisteredModel.tags),
    selectinload(RegisteredModel.aliases),
)
JOB_DETAILS = (selectinload(TrainingJob.events), selectinload(TrainingJob.folds))


def version(session: Session, *, model_name: str, version: int) -> ModelVersion:
    found = get_version(session, model_name=model_name, version=version)
    return _with(session, found, VERSION_DETAILS)


def model(session: Session, *, name: str) -> RegisteredModel:
    return _with(session, get_model(session, name=name), MODEL_DETAILS)


R = TypeVar("R", ModelVersion, RegisteredModel)


def _with(session: Session, row: R, options: Sequence[ORMOption]) -> R:
    # The row was read already; read it again with the details, into the same object.
    table = type(row)
    return session.scalars(
        select(table)
        .where(table.id == row.id)
        .options(*options)
        .execution_options(populate_existing=True)
    ).one()


def models(session: Session, *, limit: int = 100, offset: int = 0) -> Sequence[RegisteredModel]:
    return session.scalars(
        select(RegisteredModel)
        .options(*MODEL_DETAILS)
        .order_by(RegisteredModel.name)
        .limit(limit)
        .offset(offset)
    ).all()


def job(session: Session, *, job_id: str) -> TrainingJob:
    found = session.scalars(
        select(TrainingJob)
        .where(TrainingJob.id == job_id)
        .options(*JOB_DETAILS)
        .execution_options(populate_existing=True)
    ).first()
    if found is None:
        raise JobNotFound(f"no training job with id {job_id!r}")
    return found


def jobs(
    session: Session, *, state: JobState | None = None, limit: int = 100, offset: int = 0
) -> Sequence[TrainingJob]:
    query = select(TrainingJob).options(*JOB_DETAILS)
    if state is not None:
        query = query.where(TrainingJob.state == state)
    return session.scalars(
        query.order_by(TrainingJob.created_at.desc()).limit(limit).offset(offset)
    ).all()
