"""Request and response bodies of the control-plane API (rows live in registry.models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.access import Scope
from core.vocabulary import DataKind, JobState
from training.spec import ModelSpec

T = TypeVar("T")

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

# Version numbers are 32-bit integer columns; a larger number names no version, and
# PostgreSQL refuses to compare one with them.
MAX_VERSION = 2**31 - 1
MAX_PAGE = 1000
MAX_OFFSET = 2**31 - 1


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(
            "must not contain the NUL character (\\u0000), which no text column can store"
        )
    return value


# Every string a client sends that is stored or compared with a column: PostgreSQL
# refuses NUL in text, so it is refused here with the field's name instead.
Text = Annotated[str, AfterValidator(_refuse_nul)]
VersionNumber = Annotated[
    int, Path(ge=1, le=MAX_VERSION, description=f"A version number, 1 to {MAX_VERSION}.")
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE} a page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip.")]


class FromRow(BaseModel):
    """A response read from a registry row's attributes."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    offset: int


class ColumnRead(BaseModel):
    name: str
    dtype: str


class DatasetRead(FromRow):
    id: str
    name: str
    source: str
    kind: DataKind = Field(description='"table" (CSV) or "image" (NPZ of x and y arrays).')
    shape: list[int] | None = Field(
        description="[rows, feature columns] for a table, [n, height, width, channels] for images."
    )
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
    dataset: Text = Field(
        description="A dataset id from POST /datasets, or `sklearn:<name>` for a built-in "
        "dataset (breast_cancer, iris, wine, digits, diabetes, digits_images)."
    )
    spec: ModelSpec


class JobEventRead(FromRow):
    state: JobState
    message: str | None
    at: datetime


class FoldRead(FromRow):
    fold: int
    n_train: int
    n_val: int
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    seconds: float | None = Field(
        default=None, description="The fold's fit and scoring time; null for older folds."
    )


class JobRead(FromRow):
    id: str
    model_name: str
    dataset_id: str
    state: JobState
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
    kind: str = Field(
        default="train",
        description="train (registers a version), trial (one trial of a search, k-fold only) "
        "or report (writes the evaluation report of a version registered before reports).",
    )
    search_id: str | None = Field(
        default=None, description="The search it is a trial of, or whose best trial it refits."
    )
    trial: int | None = None
    folds_sha256: str | None = Field(
        default=None, description="Which rows each fold held: equal hashes, the same folds."
    )
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
    state: JobState
    folds: list[FitHistoryRead]
    refit: FitHistoryRead | None


class JobAccepted(BaseModel):
    id: str
    state: JobState
    links: dict[str, str]


class ArtifactRead(BaseModel):
    sha256: str
    size_bytes: int | None = None
    url: str | None = None


class DatasetRef(FromRow):
    id: str
    name: str
    kind: DataKind = DataKind.TABLE
    shape: list[int] | None = None
    sha256: str
    n_rows: int
    n_columns: int
    target: str


class VersionRef(BaseModel):
    model_name: str
    version: int


class MetricSummary(BaseModel):
    mean: float = Field(description="Mean over the folds.")
    std: float = Field(description="Standard deviation over the folds.")


class ModelVersionRead(BaseModel):
    model_name: str
    version: int
    description: str | None = None
    tags: dict[str, str] = {}
    aliases: list[str] = Field(default=[], description="Aliases that point at this version.")
    archived_at: datetime | None = None
    retrained_from: VersionRef | None = Field(
        default=None, description="The version this one was retrained from."
    )
    job_id: str
    dataset: DatasetRef
    spec: dict[str, Any]
    metrics: dict[str, MetricSummary] = Field(
        description="Each metric's mean and standard deviation over the k folds (see metrics_on)."
    )
    metrics_on: Literal["folds", "training_rows"] = Field(
        description="'folds': scored on each fold's held-out rows. 'training_rows': the spec "
        "asked for no cross-validation (data too small to fold), so the metrics are the "
        "model's scores on the rows it was trained on (std 0): they say it fits them, not "
        "how it does on new rows."
    )
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
    description: str | None = None
    tags: dict[str, str] = {}
    aliases: dict[str, int] = Field(default={}, description="Alias → version it points at.")
    created_at: datetime
    latest_version: int | None = Field(
        description="The newest version that is not archived: what the predictor serves "
        "without a version or alias."
    )
    versions: list[int]


class DescriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Text | None = Field(max_length=20000, description="null removes it.")


class TagSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Text = Field(max_length=5000)


class RetrainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Text | None = Field(
        default=None,
        description="A dataset id or `sklearn:<name>`; defaults to the version's own dataset.",
    )
    model_name: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="Where the new version goes; defaults to the same model.",
    )


class LineageJob(BaseModel):
    id: str
    state: JobState
    attempt: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class LineageDataset(BaseModel):
    id: str
    name: str
    source: str
    kind: DataKind
    sha256: str
    shape: list[int]
    target: str


class LineageRead(BaseModel):
    model_name: str
    version: int
    job: LineageJob
    spec: dict[str, Any]
    seed: int | None
    dataset: LineageDataset
    library_versions: dict[str, str] = Field(
        description="kiln, tensorflow, keras, tf2onnx, onnx, onnxruntime, numpy, scikit-learn."
    )
    device: str = Field(description="CPU, or the name of the GPU it trained on.")
    retrained_from: VersionRef | None


class MetricComparison(BaseModel):
    version: int
    mean: float | None
    std: float | None
    folds: list[float | None]
    diff_from_baseline: float | None = Field(
        description="This version's mean minus the baseline's (the first version named)."
    )


class CompareRead(BaseModel):
    model_name: str
    baseline: int
    versions: list[int]
    metrics: dict[str, list[MetricComparison]]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: Text = Field(
        min_length=1, max_length=200, description="Who uses the key; recorded in histories."
    )
    scopes: list[Scope] = Field(
        min_length=1,
        description="read: every GET; predict: the prediction service; train: upload data, "
        "submit, retrain and cancel one's own jobs, describe and tag; admin: everything.",
    )
    models: list[Text] | None = Field(
        default=None,
        max_length=1000,
        description="Limit the key to these model names; omitted: every model.",
    )


class KeyRead(FromRow):
    id: str
    owner: str
    prefix: str = Field(description="The token's first characters, to tell keys apart.")
    scopes: list[Scope]
    models: list[str] | None
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    token: str = Field(description="The bearer token. Shown this once; Kiln keeps its hash only.")
