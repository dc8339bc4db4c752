from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from core.access import Scope
from registry import aliases
from services.api import views
from services.api.alias_schemas import AliasEventRead, AliasRead, AliasRollback, AliasSet
from services.api.auth import AdminCaller, needs
from services.api.deps import SessionDep, StoreDep
from services.api.schemas import Text
from services.api.usecases import registry as usecases
from services.problems import responses

router = APIRouter(prefix="/models", tags=["models"])


@router.get(
    "/{name}/aliases",
    summary="List a model's aliases",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def list_aliases(session: SessionDep, name: Text) -> list[AliasRead]:
    return [views.alias_read(a) for a in aliases.list_aliases(session, model_name=name)]


@router.get(
    "/{name}/aliases/history",
    summary="Alias history",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def alias_history(
    session: SessionDep,
    name: Text,
    alias: Annotated[Text | None, Query(description="Only this alias's changes.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AliasEventRead]:
    """Every change of the model's aliases, newest first: from-version, to-version (null
    for a deletion), who (the owner of the API key that made it), why and when."""
    return [
        AliasEventRead.model_validate(e)
        for e in aliases.alias_history(session, model_name=name, alias=alias, limit=limit)
    ]


@router.get(
    "/{name}/aliases/{alias}",
    summary="Get an alias",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def get_alias(session: SessionDep, name: Text, alias: Text) -> AliasRead:
    return views.alias_read(aliases.get_alias(session, model_name=name, alias=alias))


@router.put(
    "/{name}/aliases/{alias}", summary="Point an alias at a version", responses=responses(404, 409)
)
def set_alias(
    session: SessionDep,
    store: StoreDep,
    who: AdminCaller,
    name: Text,
    alias: Text,
    body: AliasSet,
) -> AliasEventRead:
    """Create the alias or move it (a promotion). The change is recorded with the version
    it came from, the owner of the API key and the optional reason. With a `gate`, the
    move happens only when the candidate beats the version the alias points at on the
    same folds, or else on the same held-out test rows (409 `gate_refused` with both
    means, the difference and the p-value, or 409 `not_comparable`); the figures of a
    passed gate are recorded with the move. Alias names are 1 to 63 lowercase letters,
    digits, '-' or '_', starting with a letter; 'latest', 'history' and 'v<number>' are
    reserved."""
    event = usecases.set_alias(session, store, name=name, alias=alias, body=body, actor=who.actor)
    return AliasEventRead.model_validate(event)


@router.delete("/{name}/aliases/{alias}", summary="Delete an alias", responses=responses(404))
def delete_alias(
    session: SessionDep,
    who: AdminCaller,
    name: Text,
    alias: Text,
    reason: Annotated[Text | None, Query(max_length=2000)] = None,
) -> AliasEventRead:
    event = usecases.delete_alias(session, name=name, alias=alias, actor=who.actor, reason=reason)
    return AliasEventRead.model_validate(event)


@router.post(
    "/{name}/aliases/{alias}/rollback", summary="Roll an alias back", responses=responses(404, 409)
)
def rollback_alias(
    session: SessionDep, who: AdminCaller, name: Text, alias: Text, body: AliasRollback
) -> AliasEventRead:
    """Move the alias back to a named version, or with `"to": "previous"` to the version it
    pointed at before its last change (409 when it has none)."""
    event = usecases.rollback_alias(session, name=name, alias=alias, body=body, actor=who.actor)
    return AliasEventRead.model_validate(event)
