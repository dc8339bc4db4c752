"""FastAPI dependencies. Everything comes from app.state, built in the lifespan.

The ones that only read app.state are `async def`: FastAPI runs a sync dependency in the
thread pool, a hop that costs more than the read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from registry.artifacts import ArtifactStore
from services.api.auth import Caller
from services.api.dispatch import Dispatcher
from services.api.quotas import SubmitCaller
from services.api.reads import Reads
from services.api.sessions import SessionGate
from services.settings import ApiSettings


async def get_session(request: Request) -> AsyncIterator[Session]:
    # Waits for a session slot in the event loop (services/api/sessions.py), opens, and
    # closes, which rolls back what was not committed. The use cases commit
    # (services/api/usecases).
    gate: SessionGate = request.app.state.sessions
    async with gate.session() as session:
        yield session


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.store
    return store


async def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


async def get_reads(request: Request) -> Reads:
    reads: Reads = request.app.state.reads
    return reads


SessionDep = Annotated[Session, Depends(get_session)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


@dataclass(frozen=True, slots=True)
class Queueing:
    """What a route that queues a job needs: the registry session, the store, the broker,
    the settings (the limits a spec is held to) and the caller, counted against its key's
    submission rate."""

    session: Session
    store: ArtifactStore
    dispatcher: Dispatcher
    settings: ApiSettings
    who: Caller


async def queueing(
    session: SessionDep,
    store: StoreDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    who: SubmitCaller,
) -> Queueing:
    return Queueing(session, store, dispatcher, settings, who)


QueueingDep = Annotated[Queueing, Depends(queueing)]
