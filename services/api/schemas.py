"""Request and response bodies of the control-plane API (rows live in registry.models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from training.spec import ModelSpec

T = TypeVar("T")

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    offset: int


class ColumnRead(BaseModel):
    name: str
    dtype: str


class DatasetRead(_Read):
    id: str
    name: str
    source: str
    sha256: str
    size_bytes: int
    target: str
    n_rows: int
    n_columns: int
    columns: list[ColumnRead]
    class_counts: dict[str, int] | None
    created_at: datetime


class BuiltinDatasetRead(BaseModel):
    name: str = Field(description="Use it in a job as `sklearn:<name>`.")
    description: str


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(
        pattern=MODEL_NAME_PATTERN,
        description="Registered model the new version goes to; created on first use.",
    )
    dataset: str = Field(
        description="A dataset id from POST /datasets, or `sklearn:<name>` for a built-in "
        "dataset (breast_cancer, iris, wine, digits, diabetes)."
    )
    spec: ModelSpec


class JobEventRead(_Read):
    state: str
    message: str | None
    at: datetime


class FoldRead(_Read):
    fold: int
    n_train: int
    n_val: int
    metrics: dict[str, Any]
    history: dict[str, list[float]]


class JobRead(_Read):
    id: str
    model_name: str
    dataset_id: str
    state: str
    attempt: int
    worker: str | None = Field(description="host:pid of the process that runs or ran it.")
    reason: str | None
    progress: dict[str, Any] | None
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    events: list[JobEventRead]
    folds: list[FoldRead]
    model_version: int | None = None
    links: dict[str, str] = {}


class FitHistoryRead(BaseModel):
    fold: int | None = Field(description="The fold's number; null for the final refit.")
    done: bool = Field(description="False while the fit is still running: more epochs follow.")
    history: dict[str, list[float]] = Field(
        description="Per-epoch values from Keras: loss and metrics, and val_* where the fit "
        "had validation rows (the fold's held-out rows, or validation_split's)."
    )


class JobHistoryRead(BaseModel):
    job_id: str
    state: str
    folds: list[FitHistoryRead]
    refit: FitHistoryRead | None


class JobAccepted(BaseModel):
    id: str
    state: str
    links: dict[str, str]


class ArtifactRead(BaseModel):
    sha256: str
    size_bytes: int | None = None
    url: str | None = None


class DatasetRef(_Read):
    id: str
    name: str
    sha256: str
    n_rows: int
    n_columns: int
    target: str


class ModelVersionRead(BaseModel):
    model_name: str
    version: int
    job_id: str
    dataset: DatasetRef
    spec: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    test_metrics: dict[str, Any] | None = Field(
        default=None,
        description="Scores of this version's model on the rows the spec's test_split held "
        "out before k-fold (n_test of them); null without a test split.",
    )
    folds: list[FoldRead]
    parity: dict[str, Any]
    signature: dict[str, Any]
    artifacts: dict[str, ArtifactRead]
    library_versions: dict[str, str]
    device: str
    created_at: datetime


class ModelRead(BaseModel):
    name: str
    created_at: datetime
    latest_version: int | None
    versions: list[int]
