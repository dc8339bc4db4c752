from __future__ import annotations

from fastapi import APIRouter, Request, Response

from registry import versions
from registry.models import ModelVersion, RegisteredModel
from services.api.deps import SessionDep, StoreDep
from services.api.schemas import (
    ArtifactRead,
    DatasetRef,
    FoldRead,
    ModelRead,
    ModelVersionRead,
    Page,
)
from services.problems import ERROR_RESPONSES

router = APIRouter(prefix="/models", tags=["models"])


def _model_read(model: RegisteredModel) -> ModelRead:
    numbers = [v.version for v in model.versions]
    return ModelRead(
        name=model.name,
        created_at=model.created_at,
        latest_version=max(numbers) if numbers else None,
        versions=numbers,
    )


def _version_read(request: Request, session: SessionDep, mv: ModelVersion) -> ModelVersionRead:
    onnx_url = request.url_for("download_onnx", name=mv.model_name, version=mv.version)
    return ModelVersionRead(
        model_name=mv.model_name,
        version=mv.version,
        job_id=mv.job_id,
        dataset=DatasetRef.model_validate(mv.dataset),
        spec=mv.spec,
        metrics=mv.metrics,
        test_metrics=mv.test_metrics,
        folds=[
            FoldRead.model_validate(f) for f in versions.fold_metrics(session, job_id=mv.job_id)
        ],
        parity=mv.parity,
        signature=mv.signature,
        artifacts={
            "onnx": ArtifactRead(
                sha256=mv.onnx_sha256, size_bytes=mv.onnx_size_bytes, url=str(onnx_url)
            ),
            "keras": ArtifactRead(sha256=mv.keras_sha256),
        },
        library_versions=mv.library_versions,
        device=mv.device,
        created_at=mv.created_at,
    )


@router.get("", response_model=Page[ModelRead], summary="List models")
def list_models(session: SessionDep, limit: int = 100, offset: int = 0) -> Page[ModelRead]:
    rows = versions.list_models(session, limit=limit, offset=offset)
    return Page[ModelRead](items=[_model_read(m) for m in rows], limit=limit, offset=offset)


@router.get("/{name}", response_model=ModelRead, summary="Get a model", responses=ERROR_RESPONSES)
def get_model(session: SessionDep, name: str) -> ModelRead:
    return _model_read(versions.get_model(session, name=name))


@router.get(
    "/{name}/versions",
    response_model=list[ModelVersionRead],
    summary="List a model's versions",
    responses=ERROR_RESPONSES,
)
def list_versions(request: Request, session: SessionDep, name: str) -> list[ModelVersionRead]:
    return [
        _version_read(request, session, mv)
        for mv in versions.list_versions(session, model_name=name)
    ]


@router.get(
    "/{name}/versions/{version}",
    response_model=ModelVersionRead,
    summary="Get a model version",
    responses=ERROR_RESPONSES,
)
def get_version(request: Request, session: SessionDep, name: str, version: int) -> ModelVersionRead:
    """Everything about one version: the spec, the dataset's hash, each fold's metrics and
    their mean and standard deviation, the Keras-vs-ONNX parity result, the input
    signature and the artifact hashes."""
    return _version_read(
        request, session, versions.get_version(session, model_name=name, version=version)
    )


@router.get(
    "/{name}/versions/{version}/artifacts/onnx",
    summary="Download a version's ONNX file",
    response_class=Response,
    responses={**ERROR_RESPONSES, 200: {"content": {"application/octet-stream": {}}}},
)
def download_onnx(session: SessionDep, store: StoreDep, name: str, version: int) -> Response:
    """The ONNX model, checked against its recorded sha256 before it is sent."""
    mv = versions.get_version(session, model_name=name, version=version)
    data = store.get(mv.onnx_sha256)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}-v{version}.onnx"',
            "X-Content-SHA256": mv.onnx_sha256,
        },
    )
