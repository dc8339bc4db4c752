from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from core.access import Scope
from registry import lineage
from registry import views as registry_views
from services.api import views
from services.api.auth import needs
from services.api.deps import ReadsDep, SessionDep
from services.api.errors import VersionsInvalid
from services.api.schemas import (
    MAX_VERSION,
    CompareRead,
    DescriptionUpdate,
    Limit,
    ModelRead,
    Offset,
    Page,
    TagSet,
    Text,
)
from services.api.usecases import registry as usecases
from services.problems import responses

router = APIRouter(prefix="/models", tags=["models"])


@router.get(
    "", summary="List models", response_model=Page[ModelRead], dependencies=[needs(Scope.READ)]
)
async def list_models(
    request: Request, reads: ReadsDep, limit: Limit = 100, offset: Offset = 0
) -> Response:
    """Models by name, with their versions, tags and aliases. Answered from a read
    about a second old at most (`API_READ_CACHE_S`)."""

    def load(session: Session, _request: Request) -> Page[ModelRead]:
        rows = registry_views.models(session, limit=limit, offset=offset)
        return Page[ModelRead](
            items=[views.model_read(m) for m in rows], limit=limit, offset=offset
        )

    return (await reads.answer("models", request, (limit, offset), load)).response()


@router.get(
    "/{name}",
    summary="Get a model",
    response_model=ModelRead,
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
async def get_model(request: Request, reads: ReadsDep, name: Text) -> Response:
    """A model's versions, tags and aliases (read as `GET /models` is)."""

    def load(session: Session, _request: Request) -> ModelRead:
        return views.model_read(registry_views.model(session, name=name))

    return (await reads.answer("model", request, (name,), load)).response()


@router.patch(
    "/{name}",
    summary="Describe a model",
    responses=responses(404),
    dependencies=[needs(Scope.TRAIN)],
)
def update_model(session: SessionDep, name: Text, body: DescriptionUpdate) -> ModelRead:
    """Set or change the model's description; `null` removes it."""
    usecases.describe_model(session, name=name, description=body.description)
    return views.model_read(registry_views.model(session, name=name))


@router.put(
    "/{name}/tags/{key}",
    summary="Set a model tag",
    responses=responses(404),
    dependencies=[needs(Scope.TRAIN)],
)
def set_model_tag(session: SessionDep, name: Text, key: Text, body: TagSet) -> dict[str, str]:
    """Set (or change) one tag; answers with all of the model's tags."""
    return usecases.tag(session, name=name, key=key, value=body.value)


@router.delete(
    "/{name}/tags/{key}",
    summary="Remove a model tag",
    responses=responses(404),
    dependencies=[needs(Scope.TRAIN)],
)
def delete_model_tag(session: SessionDep, name: Text, key: Text) -> dict[str, str]:
    return usecases.tag(session, name=name, key=key, value=None)


@router.get(
    "/{name}/compare",
    summary="Compare versions",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def compare_versions(
    session: SessionDep,
    name: Text,
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
    if (
        len(numbers) < 2
        or len(set(numbers)) != len(numbers)
        or not all(1 <= n <= MAX_VERSION for n in numbers)
    ):
        raise VersionsInvalid(
            f"versions={versions_!r}: expected two or more distinct version numbers "
            f"from 1 to {MAX_VERSION} separated by commas, for example versions=1,2"
        )
    return CompareRead.model_validate(lineage.compare(session, model_name=name, numbers=numbers))
