from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from registry import aliases, jobs, lifecycle, versions
from registry.errors import RegistryError
from registry.models import ModelVersion, RegisteredModel
from services.api.deps import CeleryDep, SessionDep, StoreDep
from services.api.routes.jobs import enqueue, resolve_dataset
from services.api.schemas import (
    AliasEventRead,
    AliasRead,
    AliasRollback,
    AliasSet,
    ArtifactRead,
    CompareRead,
    DatasetRef,
    DescriptionUpdate,
    FoldRead,
    JobAccepted,
    LineageRead,
    ModelRead,
    ModelVersionRead,
    Page,
    RetrainCreate,
    TagSet,
    VersionRef,
)
from services.api.tables import data_info
from services.problems import ERROR_RESPONSES, ServiceError
from training.spec import ModelSpec

router = APIRouter(prefix="/models", tags=["models"])
log = logging.getLogger("kiln.api")

# Who moved an alias: free text recorded in the history (a user name, a CI job).
ActorHeader = Annotated[
    str | None,
    Header(
        alias="X-Kiln-Actor",
        max_length=200,
        description="Who makes the change; recorded in the alias history.",
    ),
]


def _model_read(session: SessionDep, model: RegisteredModel) -> ModelRead:
    numbers = [v.version for v in model.versions]
    # What the predictor serves without a version: archived versions are never "newest".
    servable = [v.version for v in model.versions if v.archived_at is None]
    return ModelRead(
        name=model.name,
        description=model.description,
        tags=lifecycle.model_tags(session, model_id=model.id),
        aliases={a.name: v for a, v in aliases.list_aliases(session, model_name=model.name)},
        created_at=model.created_at,
        latest_version=max(servable) if servable else None,
        versions=numbers,
    )


def _version_read(request: Request, session: SessionDep, mv: ModelVersion) -> ModelVersionRead:
    onnx_url = request.url_for("download_onnx", name=mv.model_name, version=mv.version)
    parent = session.get(ModelVersion, mv.retrained_from_id) if mv.retrained_from_id else None
    return ModelVersionRead(
        model_name=mv.model_name,
        version=mv.version,
        description=mv.description,
        tags=lifecycle.version_tags(session, version_id=mv.id),
        aliases=aliases.aliases_of_version(session, version_id=mv.id),
        archived_at=mv.archived_at,
        retrained_from=(
            VersionRef(model_name=parent.model_name, version=parent.version) if parent else None
        ),
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
    return Page[ModelRead](
        items=[_model_read(session, m) for m in rows], limit=limit, offset=offset
    )


@router.get("/{name}", response_model=ModelRead, summary="Get a model", responses=ERROR_RESPONSES)
def get_model(session: SessionDep, name: str) -> ModelRead:
    return _model_read(session, versions.get_model(session, name=name))


@router.patch(
    "/{name}", response_model=ModelRead, summary="Describe a model", responses=ERROR_RESPONSES
)
def update_model(session: SessionDep, name: str, body: DescriptionUpdate) -> ModelRead:
    """Set or change the model's description; `null` removes it."""
    model = lifecycle.set_model_description(session, model_name=name, description=body.description)
    session.commit()
    return _model_read(session, model)


@router.put(
    "/{name}/tags/{key}",
    response_model=dict[str, str],
    summary="Set a model tag",
    responses=ERROR_RESPONSES,
)
def set_model_tag(session: SessionDep, name: str, key: str, body: TagSet) -> dict[str, str]:
    """Set (or change) one tag; answers with all of the model's tags."""
    tags = lifecycle.set_model_tag(session, model_name=name, key=key, value=body.value)
    session.commit()
    return tags


@router.delete(
    "/{name}/tags/{key}",
    response_model=dict[str, str],
    summary="Remove a model tag",
    responses=ERROR_RESPONSES,
)
def delete_model_tag(session: SessionDep, name: str, key: str) -> dict[str, str]:
    tags = lifecycle.delete_model_tag(session, model_name=name, key=key)
    session.commit()
    return tags


# Aliases ----------------------------------------------------------------------------------


def _alias_read(session: SessionDep, name: str, alias: str) -> AliasRead:
    for row, version in aliases.list_aliases(session, model_name=name):
        if row.name == alias:
            return AliasRead(alias=alias, version=version, updated_at=row.updated_at)
    raise AssertionError(f"alias {alias} vanished inside its own transaction")


@router.get(
    "/{name}/aliases",
    response_model=list[AliasRead],
    summary="List a model's aliases",
    responses=ERROR_RESPONSES,
)
def list_aliases(session: SessionDep, name: str) -> list[AliasRead]:
    return [
        AliasRead(alias=a.name, version=v, updated_at=a.updated_at)
        for a, v in aliases.list_aliases(session, model_name=name)
    ]


@router.get(
    "/{name}/aliases/history",
    response_model=list[AliasEventRead],
    summary="Alias history",
    responses=ERROR_RESPONSES,
)
def alias_history(
    session: SessionDep,
    name: str,
    alias: Annotated[str | None, Query(description="Only this alias's changes.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AliasEventRead]:
    """Every change of the model's aliases, newest first: from-version, to-version (null
    for a deletion), who (the `X-Kiln-Actor` header), why and when."""
    return [
        AliasEventRead.model_validate(e)
        for e in aliases.alias_history(session, model_name=name, alias=alias, limit=limit)
    ]


@router.get(
    "/{name}/aliases/{alias}",
    response_model=AliasRead,
    summary="Get an alias",
    responses=ERROR_RESPONSES,
)
def get_alias(session: SessionDep, name: str, alias: str) -> AliasRead:
    aliases.get_alias(session, model_name=name, alias=alias)  # 404 when missing
    return _alias_read(session, name, alias)


@router.put(
    "/{name}/aliases/{alias}",
    response_model=AliasEventRead,
    summary="Point an alias at a version",
    responses=ERROR_RESPONSES,
)
def set_alias(
    session: SessionDep, name: str, alias: str, body: AliasSet, actor: ActorHeader = None
) -> AliasEventRead:
    """Create the alias or move it (a promotion). The change is recorded with the version
    it came from, the `X-Kiln-Actor` header and the optional reason. Alias names are 1 to
    63 lowercase letters, digits, '-' or '_', starting with a letter; 'latest', 'history'
    and 'v<number>' are reserved."""
    event = aliases.set_alias(
        session,
        model_name=name,
        alias=alias,
        version=body.version,
        actor=actor,
        reason=body.reason,
    )
    session.commit()
    return AliasEventRead.model_validate(event)


@router.delete(
    "/{name}/aliases/{alias}",
    response_model=AliasEventRead,
    summary="Delete an alias",
    responses=ERROR_RESPONSES,
)
def delete_alias(
    session: SessionDep,
    name: str,
    alias: str,
    actor: ActorHeader = None,
    reason: Annotated[str | None, Query(max_length=2000)] = None,
) -> AliasEventRead:
    event = aliases.delete_alias(session, model_name=name, alias=alias, actor=actor, reason=reason)
    session.commit()
    return AliasEventRead.model_validate(event)


@router.post(
    "/{name}/aliases/{alias}/rollback",
    response_model=AliasEventRead,
    summary="Roll an alias back",
    responses=ERROR_RESPONSES,
)
def rollback_alias(
    session: SessionDep, name: str, alias: str, body: AliasRollback, actor: ActorHeader = None
) -> AliasEventRead:
    """Move the alias back to a named version, or with `"to": "previous"` to the version it
    pointed at before its last change (409 when it has none)."""
    event = aliases.rollback(
        session,
        model_name=name,
        alias=alias,
        to=None if body.to == "previous" else body.to,
        actor=actor,
        reason=body.reason,
    )
    session.commit()
    return AliasEventRead.model_validate(event)


# Versions ---------------------------------------------------------------------------------


def _parse_tags(tags: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for t in tags:
        key, sep, value = t.partition(":")
        out.append((key, value if sep else None))
    return out


@router.get(
    "/{name}/versions",
    response_model=list[ModelVersionRead],
    summary="List a model's versions",
    responses=ERROR_RESPONSES,
)
def list_versions(
    request: Request,
    session: SessionDep,
    name: str,
    tag: Annotated[
        list[str],
        Query(description="`key:value`, or `key` for any value; repeat to require several."),
    ] = [],  # noqa: B006  (FastAPI copies query defaults)
    alias: Annotated[
        str | None, Query(description="Only the version this alias points at.")
    ] = None,
    dataset: Annotated[str | None, Query(description="A dataset id or sha256.")] = None,
    archived: Annotated[bool | None, Query(description="true: only archived; false: none.")] = None,
    order_by: Annotated[
        str | None,
        Query(description="A stored metric, `f1` or `f1.mean` or `f1.std`; default: version."),
    ] = None,
    desc: Annotated[bool, Query(description="Largest first (with order_by).")] = False,
) -> list[ModelVersionRead]:
    """Versions in version order, or ordered by a stored metric (versions without it come
    last). Filters combine: every tag, the alias, the dataset and the archived state."""
    found = lifecycle.search_versions(
        session,
        model_name=name,
        tags=_parse_tags(tag),
        alias=alias,
        dataset=dataset,
        archived=archived,
        order_by=order_by,
        descending=desc,
    )
    return [_version_read(request, session, mv) for mv in found]


@router.get(
    "/{name}/versions/{version}",
    response_model=ModelVersionRead,
    summary="Get a model version",
    responses=ERROR_RESPONSES,
)
def get_version(request: Request, session: SessionDep, name: str, version: int) -> ModelVersionRead:
    """Everything about one version: the spec, the dataset's hash, each fold's metrics and
    their mean and standard deviation, the Keras-vs-ONNX parity result, the input
    signature, the artifact hashes, its tags and the aliases that point at it."""
    return _version_read(
        request, session, versions.get_version(session, model_name=name, version=version)
    )


@router.patch(
    "/{name}/versions/{version}",
    response_model=ModelVersionRead,
    summary="Describe a version",
    responses=ERROR_RESPONSES,
)
def update_version(
    request: Request, session: SessionDep, name: str, version: int, body: DescriptionUpdate
) -> ModelVersionRead:
    mv = lifecycle.set_version_description(
        session, model_name=name, version=version, description=body.description
    )
    session.commit()
    return _version_read(request, session, mv)


@router.put(
    "/{name}/versions/{version}/tags/{key}",
    response_model=dict[str, str],
    summary="Set a version tag",
    responses=ERROR_RESPONSES,
)
def set_version_tag(
    session: SessionDep, name: str, version: int, key: str, body: TagSet
) -> dict[str, str]:
    tags = lifecycle.set_version_tag(
        session, model_name=name, version=version, key=key, value=body.value
    )
    session.commit()
    return tags


@router.delete(
    "/{name}/versions/{version}/tags/{key}",
    response_model=dict[str, str],
    summary="Remove a version tag",
    responses=ERROR_RESPONSES,
)
def delete_version_tag(session: SessionDep, name: str, version: int, key: str) -> dict[str, str]:
    tags = lifecycle.delete_version_tag(session, model_name=name, version=version, key=key)
    session.commit()
    return tags


@router.post(
    "/{name}/versions/{version}/archive",
    response_model=ModelVersionRead,
    summary="Archive a version",
    responses=ERROR_RESPONSES,
)
def archive_version(
    request: Request, session: SessionDep, name: str, version: int
) -> ModelVersionRead:
    """Keep the version and its files, but never serve it as the model's newest version;
    it is still served by number and through any alias that points at it."""
    mv = lifecycle.archive_version(session, model_name=name, version=version, archived=True)
    session.commit()
    return _version_read(request, session, mv)


@router.post(
    "/{name}/versions/{version}/unarchive",
    response_model=ModelVersionRead,
    summary="Unarchive a version",
    responses=ERROR_RESPONSES,
)
def unarchive_version(
    request: Request, session: SessionDep, name: str, version: int
) -> ModelVersionRead:
    mv = lifecycle.archive_version(session, model_name=name, version=version, archived=False)
    session.commit()
    return _version_read(request, session, mv)


@router.delete(
    "/{name}/versions/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a version",
    responses=ERROR_RESPONSES,
)
def delete_version(session: SessionDep, store: StoreDep, name: str, version: int) -> Response:
    """Delete a version that no alias points at (409 otherwise). Its ONNX and Keras files
    are removed from the artifact store unless another version or a dataset has the same
    content. The version number is not reused."""
    unused = lifecycle.delete_version(session, model_name=name, version=version)
    session.commit()
    # After the commit (a rolled-back delete keeps its files), and checked again: a job
    # that produced the same bytes may have registered them since.
    for digest in lifecycle.unreferenced(session, hashes=unused):
        try:
            store.delete(digest)
        except RegistryError:
            log.warning("could not delete artifact %s; it stays as an orphan", digest)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{name}/versions/{version}/lineage",
    response_model=LineageRead,
    summary="Where a version came from",
    responses=ERROR_RESPONSES,
)
def get_lineage(session: SessionDep, name: str, version: int) -> LineageRead:
    """The job that trained it, the exact spec and seed, the dataset (id, sha256, shape),
    the versions of Kiln and of every library in the training path, the device, and the
    version it was retrained from."""
    return LineageRead.model_validate(lifecycle.lineage(session, model_name=name, version=version))


@router.post(
    "/{name}/versions/{version}/retrain",
    response_model=JobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retrain a version",
    responses=ERROR_RESPONSES,
)
def retrain_version(
    request: Request,
    response: Response,
    session: SessionDep,
    store: StoreDep,
    celery: CeleryDep,
    name: str,
    version: int,
    body: RetrainCreate | None = None,
) -> JobAccepted:
    """Queue a job with this version's exact spec, on its own dataset or another one, into
    the same model or another. The spec is checked against the dataset as for any job;
    the new version records that it was retrained from this one."""
    body = body or RetrainCreate()
    source = versions.get_version(session, model_name=name, version=version)
    dataset = resolve_dataset(session, store, body.dataset) if body.dataset else source.dataset
    spec = ModelSpec.model_validate(source.spec)
    spec.check_against_data(class_counts=dataset.class_counts, data=data_info(dataset))
    job = jobs.create_job(
        session,
        model_name=body.model_name or name,
        dataset_id=dataset.id,
        # The version's exact stored spec, not a re-dump that would add newer defaults.
        spec=dict(source.spec),
        retrained_from_id=source.id,
    )
    return enqueue(request, response, session, celery, job)


@router.get(
    "/{name}/compare",
    response_model=CompareRead,
    summary="Compare versions",
    responses=ERROR_RESPONSES,
)
def compare_versions(
    session: SessionDep,
    name: str,
    versions_: Annotated[
        str,
        Query(
            alias="versions",
            description="Two or more version numbers, comma-separated; the first is the "
            "baseline the others are compared with.",
            examples=["1,2,3"],
        ),
    ],
) -> CompareRead:
    """Every metric of the versions side by side: mean, standard deviation and the value of
    each fold, and each version's mean minus the baseline's (the first one named)."""
    try:
        numbers = [int(p) for p in versions_.split(",") if p.strip()]
    except ValueError:
        numbers = []
    if len(numbers) < 2 or len(set(numbers)) != len(numbers):
        raise ServiceError(
            "versions_invalid",
            f"versions={versions_!r}: expected two or more distinct version numbers "
            "separated by commas, for example versions=1,2",
        )
    return CompareRead.model_validate(lifecycle.compare(session, model_name=name, numbers=numbers))


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
