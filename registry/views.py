"""Reads that return what an API view shows, in a constant number of queries.

A view of a version shows its tags, the aliases that point at it, its folds and the
version it was retrained from; a view of a job its events, folds and the version it
registered; a view of a model its versions, tags and aliases. The loader options below
fetch each of those for a whole page in one query, instead of one query per row; a
model's view is plain values from Core selects (`ModelSummary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from core.vocabulary import JobState
from registry.errors import JobNotFound
from registry.models import Alias, ModelTag, ModelVersion, RegisteredModel, TrainingJob
from registry.versions import get_model, get_version

VERSION_DETAILS = (
    selectinload(ModelVersion.tags),
    selectinload(ModelVersion.aliases),
    selectinload(ModelVersion.folds),
    selectinload(ModelVersion.retrained_from),
)
JOB_DETAILS = (selectinload(TrainingJob.events), selectinload(TrainingJob.folds))


def version(session: Session, *, model_name: str, version: int) -> ModelVersion:
    found = get_version(session, model_name=model_name, version=version)
    # Read again with the details, into the same object.
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.id == found.id)
        .options(*VERSION_DETAILS)
        .execution_options(populate_existing=True)
    ).one()


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """What a model's view shows: plain values, read with Core selects. The models page is
    the API's most polled read; ORM instances for its versions, tags and aliases cost
    more than the queries (docs/benchmarks.md)."""

    name: str
    description: str | None
    created_at: datetime
    # (number, archived) from oldest to newest.
    versions: list[tuple[int, bool]]
    tags: dict[str, str]
    aliases: dict[str, int]


def model(session: Session, *, name: str) -> ModelSummary:
    found = _summaries(session, select(RegisteredModel.id).where(RegisteredModel.name == name))
    if not found:
        get_model(session, name=name)  # raises ModelNotFound with its message
    return found[0]


def models(session: Session, *, limit: int = 100, offset: int = 0) -> list[ModelSummary]:
    page = select(RegisteredModel.id).order_by(RegisteredModel.name).limit(limit).offset(offset)
    return _summaries(session, page)


def _summaries(session: Session, ids: Select[int]) -> list[ModelSummary]:
    # Four queries for any page: the models, then their versions, tags and aliases.
    rows = session.execute(
        select(
            RegisteredModel.id,
            RegisteredModel.name,
            RegisteredModel.description,
            RegisteredModel.created_at,
        )
        .where(RegisteredModel.id.in_(ids.scalar_subquery()))
        .order_by(RegisteredModel.name)
    ).all()
    if not rows:
        return []
    wanted = [row.id for row in rows]
    versions: dict[int, list[tuple[int, bool]]] = {i: [] for i in wanted}
    for model_id, number, archived_at in session.execute(
        select(ModelVersion.registered_model_id, ModelVersion.version, ModelVersion.archived_at)
        .where(ModelVersion.registered_model_id.in_(wanted))
        .order_by(ModelVersion.version)
    ):
        versions[model_id].append((number, archived_at is not None))
    tags: dict[int, dict[str, str]] = {i: {} for i in wanted}
    for model_id, key, value in session.execute(
        select(ModelTag.registered_model_id, ModelTag.key, ModelTag.value)
        .where(ModelTag.registered_model_id.in_(wanted))
        .order_by(ModelTag.key)
    ):
        tags[model_id][key] = value
    aliases: dict[int, dict[str, int]] = {i: {} for i in wanted}
    for model_id, alias, number in session.execute(
        select(Alias.registered_model_id, Alias.name, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == Alias.model_version_id)
        .where(Alias.registered_model_id.in_(wanted))
        .order_by(Alias.name)
    ):
        aliases[model_id][alias] = number
    return [
        ModelSummary(
            name=row.name,
            description=row.description,
            created_at=row.created_at,
            versions=versions[row.id],
            tags=tags[row.id],
            aliases=aliases[row.id],
        )
        for row in rows
    ]


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
