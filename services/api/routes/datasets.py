from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from pydantic import BaseModel

from core.access import Scope
from core.vocabulary import DataKind
from registry import datasets
from registry.models import Dataset
from services.api import builtin, idempotency
from services.api.auth import needs
from services.api.deps import SessionDep, SettingsDep, StoreDep
from services.api.idempotency import IdempotencyKey
from services.api.quotas import SubmitCaller
from services.api.schemas import BuiltinDatasetRead, DatasetRead, Limit, Offset, Page, Text
from services.api.usecases import datasets as usecases
from services.problems import responses

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post(
    "",
    response_model=DatasetRead,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a dataset: a CSV table or an NPZ of images",
    responses=responses(409, 415, 429),
)
def upload_dataset(
    request: Request,
    who: SubmitCaller,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[
        UploadFile,
        # format: binary, as OpenAPI 3.0 said it: generated clients send a file, not a string.
        File(
            description="A CSV file with a header row, or an NPZ of images.",
            json_schema_extra={"format": "binary"},
        ),
    ],
    target: Annotated[
        Text | None,
        Form(max_length=200, description="The column to predict (tables; images use y)."),
    ] = None,
    name: Annotated[
        Text | None, Form(max_length=200, description="Defaults to the file name.")
    ] = None,
    kind: Annotated[
        Literal["table", "image"] | None,
        Form(description="table (CSV) or image (NPZ); guessed from the file when left out."),
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | Response:
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
    created = True

    def store_it() -> DatasetRead:
        nonlocal created
        dataset, created = usecases.upload(
            session,
            store,
            data=data,
            max_bytes=settings.max_upload_bytes,
            filename=file.filename,
            content_type=file.content_type,
            kind=None if kind is None else DataKind(kind),
            target=target,
            name=name,
        )
        if not created:
            response.status_code = status.HTTP_200_OK
        return DatasetRead.model_validate(dataset)

    return idempotency.once(
        request.app.state.sessionmaker,
        key=idempotency_key,
        owner=who.owner,
        operation="datasets-upload_dataset",
        request=idempotency.fingerprint(data, [file.filename, kind, target, name]),
        status=status.HTTP_201_CREATED,
        run=store_it,
    )


@router.get("", summary="List datasets", dependencies=[needs(Scope.READ)])
def list_datasets(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> Page[DatasetRead]:
    rows = datasets.list_datasets(session, limit=limit, offset=offset)
    return Page[DatasetRead](
        items=[DatasetRead.model_validate(r) for r in rows], limit=limit, offset=offset
    )


@router.get("/builtin", summary="List built-in datasets", dependencies=[needs(Scope.READ)])
def list_builtin() -> list[BuiltinDatasetRead]:
    """Datasets that ship inside scikit-learn. Use them in a job as `sklearn:<name>`."""
    return [BuiltinDatasetRead(name=n, description=d) for n, d in builtin.DATASETS.items()]


@router.get(
    "/{dataset_id}",
    response_model=DatasetRead,
    summary="Get a dataset",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def get_dataset(session: SessionDep, dataset_id: Text) -> Dataset:
    return datasets.get_dataset(session, dataset_id=dataset_id)
