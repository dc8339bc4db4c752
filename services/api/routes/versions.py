from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel

from core.access import Scope
from registry import lineage, search, versions
from registry import views as registry_views
from services.api import idempotency, views
from services.api.auth import needs
from services.api.deps import QueueingDep, SessionDep, StoreDep
from services.api.idempotency import IdempotencyKey
from services.api.routes.jobs import accept
from services.api.schemas import (
    DescriptionUpdate,
    JobAccepted,
    LineageRead,
    ModelVersionRead,
    RetrainCreate,
    TagSet,
    Text,
    VersionNumber,
)
from services.api.usecases import jobs as job_usecases
from services.api.usecases import registry as usecases
from services.problems import responses

router = APIRouter(prefix="/models", tags=["models"])


def _parse_tags(tags: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for t in tags:
        key, sep, value = t.partition(":")
        out.append((key, value if sep else None))
    return out


@router.get(
    "/{name}/versions",
    summary="List a model's versions",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def list_versions(
    request: Request,
    session: SessionDep,
    name: Text,
    tag: Annotated[
        list[Text],
        Query(description="`key:value`, or `key` for any value; repeat to require several."),
    ] = [],  # noqa: B006  (FastAPI copies query defaults)
    alias: Annotated[
        Text | None, Query(description="Only the version this alias points at.")
    ] = None,
    dataset: Annotated[Text | None, Query(description="A dataset id or sha256.")] = None,
    archived: Annotated[bool | None, Query(description="true: only archived; false: none.")] = None,
    order_by: Annotated[
        Text | None,
        Query(description="A stored metric, `f1` or `f1.mean` or `f1.std`; default: version."),
    ] = None,
    desc: Annotated[bool, Query(description="Largest first (with order_by).")] = False,
) -> list[ModelVersionRead]:
    """Versions in version order, or ordered by a stored metric (versions without it come
    last). Filters combine: every tag, the alias, the dataset and the archived state."""
    found = search.search_versions(
        session,
        model_name=name,
        tags=_parse_tags(tag),
        alias=alias,
        dataset=dataset,
        archived=archived,
        order_by=order_by,
        descending=desc,
    )
    return [views.version_read(request, mv) for mv in found]


@router.get(
    "/{name}/versions/{version}",
    summary="Get a model version",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def get_version(
    request: Request, session: SessionDep, name: Text, version: VersionNumber
) -> ModelVersionRead:
    """Everything about one version: the spec, the dataset's hash, each fold's metrics and
    their mean and standard deviation, the Keras-vs-ONNX parity result, the input
    signature, the artifact hashes, its tags and the aliases that point at it."""
    return _read(request, session, name, version)


def _read(request: Request, session: SessionDep, name: str, version: int) -> ModelVersionRead:
    return views.version_read(
        request, registry_views.version(session, model_name=name, version=version)
    )


@router.patch(
    "/{name}/versions/{version}",
    summary="Describe a version",
    responses=responses(404),
    dependencies=[needs(Scope.TRAIN)],
)
def update_version(
    request: Request,
    session: SessionDep,
    name: Text,
    version: VersionNumber,
    body: DescriptionUpdate,
) -> ModelVersionRead:
    usecases.describe_version(session, name=name, version=version, description=body.description)
    return _read(request, session, name, version)


@router.put(
    "/{name}/versions/{version}/tags/{key}",
    summary="Set a version tag",
    responses=responses(404),
    dependencies=[needs(Scope.TRAIN)],
)
def set_version_tag(
    session: SessionDep, name: Text, version: VersionNumber, key: Text, body: TagSet
) -> dict[str, str]:
    return usecases.tag(session, name=name, version=version, key=key, value=body.value)


@router.delete(
    "/{name}/versions/{version}/tags/{key}",
    summary="Remove a version tag",
    responses=responses(404),
    dependencies=[needs(Scope.TRAIN)],
)
def delete_version_tag(
    session: SessionDep, name: Text, version: VersionNumber, key: Text
) -> dict[str, str]:
    return usecases.tag(session, name=name, version=version, key=key, value=None)


@router.post(
    "/{name}/versions/{version}/archive",
    summary="Archive a version",
    responses=responses(404),
    dependencies=[needs(Scope.ADMIN)],
)
def archive_version(
    request: Request, session: SessionDep, name: Text, version: VersionNumber
) -> ModelVersionRead:
    """Keep the version and its files, but never serve it as the model's newest version;
    it is still served by number and through any alias that points at it."""
    usecases.archive(session, name=name, version=version, archived=True)
    return _read(request, session, name, version)


@router.post(
    "/{name}/versions/{version}/unarchive",
    summary="Unarchive a version",
    responses=responses(404),
    dependencies=[needs(Scope.ADMIN)],
)
def unarchive_version(
    request: Request, session: SessionDep, name: Text, version: VersionNumber
) -> ModelVersionRead:
    usecases.archive(session, name=name, version=version, archived=False)
    return _read(request, session, name, version)


@router.delete(
    "/{name}/versions/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a version",
    responses=responses(404, 409),
    dependencies=[needs(Scope.ADMIN)],
)
def delete_version(session: SessionDep, name: Text, version: VersionNumber) -> Response:
    """Delete a version that no alias points at (409 otherwise). Its ONNX and Keras files
    are removed from the artifact store unless another version or a dataset has the same
    content: by the API's sweeper, `ARTIFACT_ORPHAN_GRACE_S` after the delete. The
    version number is not reused."""
    usecases.delete_version(session, name=name, version=version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{name}/versions/{version}/lineage",
    summary="Where a version came from",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def get_lineage(session: SessionDep, name: Text, version: VersionNumber) -> LineageRead:
    """The job that trained it, the exact spec and seed, the dataset (id, sha256, shape),
    the versions of Kiln and of every library in the training path, the device, and the
    version it was retrained from."""
    return LineageRead.model_validate(lineage.lineage(session, model_name=name, version=version))


@router.post(
    "/{name}/versions/{version}/retrain",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    summary="Retrain a version",
    responses=responses(404, 409, 429),
)
def retrain_version(
    request: Request,
    response: Response,
    q: QueueingDep,
    name: Text,
    version: VersionNumber,
    # Optional, but not nullable: openapi-python-client sends an optional *nullable* body
    # it was not given as the JSON of its UNSET marker, and fails.
    body: Annotated[RetrainCreate, Body(default_factory=RetrainCreate)],
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | Response:
    """Queue a job with this version's exact spec, on its own dataset or another one, into
    the same model or another. The spec is checked against the dataset as for any job;
    the new version records that it was retrained from this one."""
    q.who.require(Scope.TRAIN, model=body.model_name or name)
    return accept(
        request,
        response,
        q,
        key=idempotency_key,
        operation="models-retrain_version",
        fingerprint=idempotency.fingerprint(name, version, body.model_dump(mode="json")),
        queue=lambda: job_usecases.retrain(q, model_name=name, version=version, body=body),
    )


@router.get(
    "/{name}/versions/{version}/artifacts/onnx",
    summary="Download a version's ONNX file",
    response_class=Response,
    responses={
        **responses(404, 500, _500="The stored file no longer matches its sha256"),
        200: {
            "description": "The ONNX file",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    },
    dependencies=[needs(Scope.READ)],
)
def download_onnx(
    session: SessionDep, store: StoreDep, name: Text, version: VersionNumber
) -> Response:
    """The ONNX model, checked against its recorded sha256 before it is sent."""
    mv = versions.get_version(session, model_name=name, version=version)
    return Response(
        store.get(mv.onnx_sha256),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}-v{version}.onnx"',
            "X-Content-SHA256": mv.onnx_sha256,
        },
    )
