"""Registry tables. The database, not the broker, is the source of truth for jobs.

Relationships marked viewonly exist for reading: the registry's view functions load them
with `selectinload` so that a page of versions or jobs costs a constant number of
queries; writes go through the registry functions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from core.vocabulary import DataKind, JobState
from registry.db import Base, EnumText, UTCDateTime, utcnow


def new_id() -> str:
    return uuid.uuid4().hex


class Dataset(Base):
    __tablename__ = "dataset"
    __table_args__ = (UniqueConstraint("sha256", "target"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))  # "upload" or "builtin"
    # "table" (CSV) or "image" (NPZ of arrays); a job's spec can cut a table into sequences.
    kind: Mapped[DataKind] = mapped_column(
        EnumText(DataKind), default=DataKind.TABLE, server_default="table"
    )
    # Shape of the feature array: [rows, columns] for a table, [n, h, w, c] for images.
    shape: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    target: Mapped[str] = mapped_column(String(200))
    n_rows: Mapped[int] = mapped_column(Integer)
    n_columns: Mapped[int] = mapped_column(Integer)
    # [{"name": ..., "dtype": ...}] in file order, the target included.
    columns: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    # {"label": count} when the target holds class labels, else None.
    class_counts: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RegisteredModel(Base):
    __tablename__ = "registered_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The highest version number given so far. Deleting a version never lowers it, so a
    # number is never given twice (registry.versions.register_version).
    last_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    versions: Mapped[list[ModelVersion]] = relationship(
        order_by="ModelVersion.version", back_populates="registered_model"
    )
    tags: Mapped[list[ModelTag]] = relationship(order_by="ModelTag.key", viewonly=True)
    aliases: Mapped[list[Alias]] = relationship(order_by="Alias.name", viewonly=True)


class ModelVersion(Base):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("registered_model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registered_model_id: Mapped[int] = mapped_column(ForeignKey("registered_model.id"))
    version: Mapped[int] = mapped_column(Integer)
    # Unique: a redelivered job cannot register a second version.
    job_id: Mapped[str] = mapped_column(ForeignKey("training_job.id"), unique=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, dict[str, float]]] = mapped_column(JSON)
    parity: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    onnx_sha256: Mapped[str] = mapped_column(String(64))
    onnx_size_bytes: Mapped[int] = mapped_column(BigInteger)
    keras_sha256: Mapped[str] = mapped_column(String(64))
    # The evaluation report (training.report), a JSON artifact; None for a version
    # registered before reports until a report job writes one.
    report_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The exported model's outputs on the rows its spec's test_split held out, row by row
    # (an NPZ artifact: rows, y, output); None without a test split. Gates compare on it.
    predictions_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The reference profile of its training rows (training.profile), a JSON artifact: what
    # served data is compared with.
    profile_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(200))
    # Metrics on the held-out test split, when the spec asked for one.
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    retrained_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id"), nullable=True
    )
    # Archived versions stay on disk but are served by explicit number only.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    registered_model: Mapped[RegisteredModel] = relationship(
        back_populates="versions", lazy="joined"
    )
    dataset: Mapped[Dataset] = relationship(lazy="joined")
    job: Mapped[TrainingJob] = relationship(foreign_keys=[job_id])
    tags: Mapped[list[VersionTag]] = relationship(order_by="VersionTag.key", viewonly=True)
    aliases: Mapped[list[Alias]] = relationship(order_by="Alias.name", viewonly=True)
    folds: Mapped[list[FoldMetric]] = relationship(
        primaryjoin="foreign(FoldMetric.job_id) == ModelVersion.job_id",
        order_by="FoldMetric.fold",
        viewonly=True,
    )
    retrained_from: Mapped[ModelVersion | None] = relationship(
        remote_side=[id], foreign_keys=[retrained_from_id], viewonly=True
    )

    @property
    def model_name(self) -> str:
        return self.registered_model.name


class TrainingJob(Base):
    __tablename__ = "training_job"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[JobState] = mapped_column(EnumText(JobState), default=JobState.QUEUED, index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # {"phase", "fold", "n_folds", "epoch", "epochs", "logs", "history"} while running:
    # "history" holds the curves of the fits whose results are not stored yet (the folds
    # in flight); a finished fold's curves live in its fold_metric row, the refit's here.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The owner of the API key that submitted it (None when Kiln runs open).
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    # "train" (registers a version), "trial" (one trial of a search: k-fold only) or
    # "report" (the evaluation report of version params["version"], registered before
    # reports).
    kind: Mapped[str] = mapped_column(String(20), default="train", server_default="train")
    # The search it belongs to: its trials, and the refit of its best trial (lineage).
    search_id: Mapped[str | None] = mapped_column(
        ForeignKey("search.id"), nullable=True, index=True
    )
    # Kiln's number of the trial within its search (1, 2, …); on a refit, the winner's.
    trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A trial's sampled parameters (a report job's: its version), Optuna's number for it, how it ended ("complete",
    # "pruned", "stopped" at the search's wall time) and its objective (mean over folds).
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    study_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    objective: Mapped[float | None] = mapped_column(Float, nullable=True)
    # sha256 of which rows each fold validated on: equal hashes, the same folds.
    folds_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Set when the job retrains an existing version (lineage).
    retrained_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", use_alter=True), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The version it registered, read in the same query as the job.
    version_number: Mapped[int | None] = column_property(
        select(ModelVersion.version).where(ModelVersion.job_id == id).scalar_subquery()
    )

    dataset: Mapped[Dataset] = relationship(lazy="joined")
    events: Mapped[list[JobEvent]] = relationship(
        order_by="JobEvent.id", back_populates="job", cascade="all, delete-orphan"
    )
    folds: Mapped[list[FoldMetric]] = relationship(order_by="FoldMetric.fold", viewonly=True)


class Search(Base):
    """A model search: trials (jobs of kind "trial") sampled by Optuna around a base spec,
    all on the same folds, and the refit of the best one (registry.searches)."""

    __tablename__ = "search"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("dataset.id"))
    # The base spec, the space, the objective, the budget and the options, as validated
    # (training.spec.search).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    space: Mapped[dict[str, Any]] = mapped_column(JSON)
    objective: Mapped[dict[str, Any]] = mapped_column(JSON)
    budget: Mapped[dict[str, Any]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[JobState] = mapped_column(EnumText(JobState), default=JobState.QUEUED, index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    # Every trial's fold assignment, pinned by the first trial that computed it.
    folds_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    best_trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    refit_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # No trial starts after it; running trials stop at their next fold.
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Touched by every advance: the row lock that serialises them (registry.searches).
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    dataset: Mapped[Dataset] = relationship(lazy="joined")
    trials: Mapped[list[TrainingJob]] = relationship(
        primaryjoin="and_(foreign(TrainingJob.search_id) == Search.id, "
        "TrainingJob.kind == 'trial')",
        order_by="TrainingJob.trial",
        viewonly=True,
    )
    # The refits of its best trials (the best one's is refit_job_id).
    refits: Mapped[list[TrainingJob]] = relationship(
        primaryjoin="and_(foreign(TrainingJob.search_id) == Search.id, "
        "TrainingJob.kind == 'train')",
        order_by="TrainingJob.created_at",
        viewonly=True,
    )

    @property
    def study_name(self) -> str:
        return f"kiln-search-{self.id}"


class JobEvent(Base):
    """One row per state transition, with its time and a message."""

    __tablename__ = "job_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("training_job.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[JobState] = mapped_column(EnumText(JobState))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    job: Mapped[TrainingJob] = relationship(back_populates="events")


class FoldMetric(Base):
    """Metrics of one cross-validation fold, written as soon as the fold ends."""

    __tablename__ = "fold_metric"
    __table_args__ = (UniqueConstraint("job_id", "fold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_job.id", ondelete="CASCADE"))
    fold: Mapped[int] = mapped_column(Integer)
    n_train: Mapped[int] = mapped_column(Integer)
    n_val: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    history: Mapped[dict[str, list[float]]] = mapped_column(JSON)
    # The fold's fit and scoring, in seconds; None for folds stored before it was kept.
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class _Tag:
    """A free-form key and value; unique per key on its owner."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[str] = mapped_column(Text)


class ModelTag(_Tag, Base):
    __tablename__ = "model_tag"
    __table_args__ = (UniqueConstraint("registered_model_id", "key"),)

    registered_model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_model.id", ondelete="CASCADE"), index=True
    )


class VersionTag(_Tag, Base):
    __tablename__ = "version_tag"
    __table_args__ = (UniqueConstraint("model_version_id", "key"),)

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_version.id", ondelete="CASCADE"), index=True
    )


class Alias(Base):
    """A movable name (production, staging, …) pointing at one version of a model."""

    __tablename__ = "alias"
    __table_args__ = (UniqueConstraint("registered_model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registered_model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_model.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The number of the version it points at, read in the same query as the alias.
    version: Mapped[int] = column_property(
        select(ModelVersion.version).where(ModelVersion.id == model_version_id).scalar_subquery()
    )


class AliasEvent(Base):
    """Every move of an alias: promotion, rollback or deletion (to_version None)."""

    __tablename__ = "alias_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registered_model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_model.id", ondelete="CASCADE"), index=True
    )
    alias: Mapped[str] = mapped_column(String(100))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The promotion gate this move passed, with its figures (services/api/gates.py).
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OrphanArtifact(Base):
    """An artifact that a deleted version left without a reference. The sweeper removes
    its file once the row is older than the grace period and still nothing refers to the
    hash (registry.orphans)."""

    __tablename__ = "orphan_artifact"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    orphaned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """A bearer token's hash, its owner and what it may do (registry.keys). The token
    itself is shown once, when the key is made, and never stored."""

    __tablename__ = "api_key"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, to tell keys apart in lists and logs.
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # Model names the key is limited to; None: every model.
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class IdempotencyRecord(Base):
    """The first answer to a submission sent with an `Idempotency-Key`, replayed when the
    same owner sends the same key and body again (services/api/idempotency.py)."""

    __tablename__ = "idempotency_record"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    operation: Mapped[str] = mapped_column(String(100), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
