from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from sqlalchemy.orm import Session

from registry import datasets
from registry.artifacts import ArtifactStore, sha256_hex
from registry.models import Dataset
from services.api.deps import SessionDep, SettingsDep, StoreDep
from services.api.schemas import BuiltinDatasetRead, DatasetRead, Page
from services.api.tables import (
    BUILTIN_DATASETS,
    BUILTIN_IMAGES,
    IMAGE_TARGET,
    TableSummary,
    builtin_csv,
    builtin_npz,
    inspect_csv,
    inspect_npz,
)
from services.problems import ERROR_RESPONSES, ServiceError

router = APIRouter(prefix="/datasets", tags=["datasets"])

CSV_TYPES = {
    "text/csv",
    "application/csv",
    "text/plain",
    "application/vnd.ms-excel",
    "application/octet-stream",
}
NPZ_TYPES = {
    "application/octet-stream",
    "application/zip",
    "application/x-npz",
    "application/x-zip-compressed",
}


def store_table(
    session: Session,
    store: ArtifactStore,
    *,
    data: bytes,
    name: str,
    source: str,
    target: str,
    kind: str = "table",
) -> tuple[Dataset, bool]:
    """Validate and store a CSV table or an NPZ of images; the same bytes with the same
    target return the existing row."""
    if kind == "image":
        target = IMAGE_TARGET
    digest = sha256_hex(data)
    existing = datasets.find_dataset(session, sha256=digest, target=target)
    if existing is not None:
        return existing, False
    summary: TableSummary = (
        inspect_npz(data) if kind == "image" else inspect_csv(data, target=target)
    )
    store.put(data)
    dataset = datasets.create_dataset(
        session,
        name=name,
        source=source,
        sha256=digest,
        size_bytes=len(data),
        target=target,
        n_rows=summary.n_rows,
        columns=summary.columns,
        class_counts=summary.class_counts,
        kind=kind,
        shape=summary.shape,
    )
    return dataset, True


def builtin_dataset(session: Session, store: ArtifactStore, name: str) -> Dataset:
    if name in BUILTIN_IMAGES:
        dataset, _ = store_table(
            session,
            store,
            data=builtin_npz(name),
            name=name,
            source="builtin",
            target=IMAGE_TARGET,
            kind="image",
        )
        return dataset
    data, target = builtin_csv(name)
    dataset, _ = store_table(session, store, data=data, name=name, source="builtin", target=target)
    return dataset


@router.post(
    "",
    response_model=DatasetRead,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a dataset: a CSV table or an NPZ of images",
    responses={**ERROR_RESPONSES, 413: ERROR_RESPONSES[422], 415: ERROR_RESPONSES[422]},
)
def upload_dataset(
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[
        UploadFile, File(description="A CSV file with a header row, or an NPZ of images.")
    ],
    target: Annotated[
        str | None, Form(description="The column to predict (tables; images use y).")
    ] = None,
    name: Annotated[str | None, Form(description="Defaults to the file name.")] = None,
    kind: Annotated[
        Literal["table", "image"] | None,
        Form(description="table (CSV) or image (NPZ); guessed from the file when left out."),
    ] = None,
) -> Dataset:
    """Upload a CSV with a header row (`kind=table`, the target column named in `target`),
    or an NPZ written by `np.savez(f, x=images, y=labels)` (`kind=image`): `x` of shape
    (N, H, W) or (N, H, W, C), numeric and finite, and `y` of shape (N,). Kiln stores it
    under its sha256 and records rows, shape, dtypes and (for class labels) the count of
    each class.

    Every feature must be numeric and every cell filled; otherwise the answer is 422 with
    the offending columns or arrays. Uploading the same file with the same target again
    returns the existing dataset with 200. A time-series CSV is uploaded as a table: the
    job's spec `window` cuts it into sequences.
    """
    data = file.file.read(settings.max_upload_bytes + 1)
    if kind is None:
        kind = "image" if data.startswith(b"PK\x03\x04") else "table"
    ctype = (file.content_type or "").split(";")[0].strip()
    allowed = NPZ_TYPES if kind == "image" else CSV_TYPES
    if ctype and ctype not in allowed:
        expected = "application/octet-stream (an NPZ)" if kind == "image" else "text/csv"
        raise ServiceError(
            "unsupported_media_type",
            f"the file was sent as {file.content_type!r}; expected {expected}",
        )
    if len(data) > settings.max_upload_bytes:
        raise ServiceError(
            "upload_too_large",
            f"the upload is larger than the {settings.max_upload_bytes}-byte limit",
        )
    dataset, created = store_table(
        session,
        store,
        data=data,
        name=name or file.filename or ("upload.npz" if kind == "image" else "upload.csv"),
        source="upload",
        target=_table_target(target) if kind == "table" else IMAGE_TARGET,
        kind=kind,
    )
    session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    return dataset


def _table_target(target: str | None) -> str:
    if not target:
        raise ServiceError(
            "target_missing", "a CSV table needs the target form field: the column to predict"
        )
    return target


@router.get("", response_model=Page[DatasetRead], summary="List datasets")
def list_datasets(session: SessionDep, limit: int = 100, offset: int = 0) -> Page[DatasetRead]:
    rows = datasets.list_datasets(session, limit=limit, offset=offset)
    return Page[DatasetRead](
        items=[DatasetRead.model_validate(r) for r in rows], limit=limit, offset=offset
    )


@router.get("/builtin", response_model=list[BuiltinDatasetRead], summary="List built-in datasets")
def list_builtin() -> list[BuiltinDatasetRead]:
    """Datasets that ship inside scikit-learn. Use them in a job as `sklearn:<name>`."""
    return [BuiltinDatasetRead(name=n, description=d) for n, d in BUILTIN_DATASETS.items()]


@router.get(
    "/{dataset_id}", response_model=DatasetRead, summary="Get a dataset", responses=ERROR_RESPONSES
)
def get_dataset(session: SessionDep, dataset_id: str) -> Dataset:
    return datasets.get_dataset(session, dataset_id=dataset_id)
