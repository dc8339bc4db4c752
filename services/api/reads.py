"""The API's most polled reads, answered from memory for up to API_READ_CACHE_S
(docs/decisions/0023).

Clients poll `GET /jobs/{id}` while a job trains and `GET /models` (and one model) from
dashboards; the answer changes at most about once a second (a worker's heartbeat). Each
answer is kept per process, as the JSON bytes sent, for ``ttl_s``:

- requests for an answer that is being read wait for that one read, so N clients polling
  one job cost one read a second, not N;
- an answer asked for in the second half of its time is read again in the background
  while it is still served, so clients that keep polling never wait for the database;
- an answer is never older than ``ttl_s``, except while a newer read of it is under way
  (a busy API takes a while to read): then it is served up to ``2 * ttl_s`` old rather
  than make every client wait for that read.

What a key may see is checked on every request, before the answer is looked up (the
model a path names, in `caller`) or after it (the model a job trains). A commit of what
this process's sessions wrote (an upload, a promotion, a cancel: every write of the API)
empties the cache, so a client reads its own writes; what workers and other API
processes write is seen within ``ttl_s``.

Reads wait for the database in the event loop: SQLAlchemy's asyncio engine runs the
registry's sync views with `run_sync`. A read in a thread, with the event loop busy,
waits for the GIL at every answer from the database (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from fastapi import Request, Response
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from services.api.sessions import SessionGate

# Distinct answers kept per kind (a job, a model, a page of models).
MAX_ENTRIES = 2048


@dataclass(frozen=True, slots=True)
class Answer:
    """A read's body as sent, and the model it shows (checked against the caller's key)."""

    body: bytes
    model_name: str | None = None

    def response(self) -> Response:
        return Response(self.body, media_type="application/json")


Load = Callable[[Session, Request], BaseModel]


@dataclass(slots=True)
class _Entry:
    answer: Answer | None = None
    read_at: float = 0.0  # when the read of ``answer`` began (time.monotonic)
    reading: asyncio.Task[Answer] | None = field(default=None, repr=False)


class _Kept:
    """Answers of one kind by key, each read at most once at a time."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def clear(self) -> None:
        # A read in flight finishes for the requests that wait for it; its answer goes
        # into a detached entry, never into the cache.
        self._entries.clear()

    async def get(self, key: Hashable, read: Callable[[], Awaitable[Answer]]) -> Answer:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            age = now - entry.read_at
            if entry.answer is not None:
                fresh = age < self._ttl_s
                if fresh and entry.reading is None and age >= self._ttl_s / 2:
                    self._start(entry, read)  # in the background
                if fresh or (entry.reading is not None and age < 2 * self._ttl_s):
                    return entry.answer
        else:
            entry = self._entries[key] = _Entry()
            if len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        reading = entry.reading or self._start(entry, read)
        # Shielded: a client that goes away does not cancel the read others wait for.
        return await asyncio.shield(reading)

    def _start(self, entry: _Entry, read: Callable[[], Awaitable[Answer]]) -> asyncio.Task[Answer]:
        async def refresh() -> Answer:
            began = time.monotonic()
            try:
                answer = await read()
            finally:
                entry.reading = None
            entry.answer, entry.read_at = answer, began
            return answer

        task = entry.reading = asyncio.ensure_future(refresh())
        # A background read that fails leaves the answer it would have replaced; its
        # error is for the requests that wait for it, if any.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task


class Reads:
    """Cached reads for the routes that clients poll; ``ttl_s`` 0 reads every time."""

    def __init__(
        self,
        sm: sessionmaker[Session],
        *,
        ttl_s: float,
        engine: AsyncEngine | None,
        gate: SessionGate,
    ) -> None:
        # Without an asyncio engine (an in-memory SQLite database), a read runs in a
        # thread with a session of ``gate``, as the other routes' do.
        self.engine = engine
        self._sessions = None if engine is None else async_sessionmaker(engine)
        self._gate = gate
        self._ttl_s = ttl_s
        self._kept: dict[str, _Kept] = {}
        if ttl_s > 0:
            self._clear_after_writes(sm)

    def _clear_after_writes(self, sm: sessionmaker[Session]) -> None:
        """Empty the cache when a session of ``sm`` commits what it wrote (rows flushed,
        or an insert, update or delete it executed); a commit of reads only (the sweeper
        finding nothing to do) keeps it."""
        loop = asyncio.get_running_loop()

        def wrote(session: Session, *_: object) -> None:
            session.info["kiln_wrote"] = True

        def executed(state: ORMExecuteState) -> None:
            if state.is_insert or state.is_update or state.is_delete:
                wrote(state.session)

        def committed(session: Session) -> None:
            if session.info.pop("kiln_wrote", False):
                # Commits run in the routes' threads; the cache lives in the event loop.
                loop.call_soon_threadsafe(self.clear)

        event.listen(sm, "after_flush", wrote)
        event.listen(sm, "do_orm_execute", executed)
        # A write rolled back and a later commit still empty it: harmless, and a savepoint
        # rolled back inside a write never hides the write.
        event.listen(sm, "after_commit", committed)

    def clear(self) -> None:
        for kept in self._kept.values():
            kept.clear()

    async def answer(
        self, kind: str, request: Request, key: tuple[Hashable, ...], load: Load, *, model: str = ""
    ) -> Answer:
        """``load``'s answer, kept under ``key``: the path and query values it depends on
        (the base URL, for the links, is added here). ``model`` names the attribute of the
        answer that holds its model's name."""

        async def read() -> Answer:
            return await self._read(request, load, model)

        if self._ttl_s <= 0:
            return await read()
        kept = self._kept.get(kind) or self._kept.setdefault(kind, _Kept(self._ttl_s))
        return await kept.get((*key, str(request.base_url)), read)

    async def _read(self, request: Request, load: Load, model: str) -> Answer:
        if self._sessions is not None:
            async with self._sessions() as session:
                body = await session.run_sync(load, request)
        else:
            async with self._gate.session() as session:
                body = await run_in_threadpool(load, session, request)
        return Answer(body.model_dump_json().encode(), getattr(body, model, None))
