"""Sessions for requests, at most as many at once as the pool has connections
(docs/decisions/0022).

A sync route holds its session's connection from its first query until the session
closes, after the response is validated, and FastAPI validates a sync route's response
in a worker thread: a second wait for one of anyio's threads, with the connection held.
With more requests in flight than connections, the threads all wait for connections
that sessions queued behind them for a thread hold: nothing moves until the pool's
timeout fails them. A request therefore waits for a session slot first, in the event
loop, where waiting costs nothing and holds nothing; a session that has a slot always
gets a connection at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from registry.db import RETRY_AFTER_S, make_async_engine
from registry.errors import RegistryUnavailable


class SessionGate:
    """Hands out sessions, ``slots`` at a time; a request that waits ``timeout_s`` for one
    gets a 503 with Retry-After instead of queueing on."""

    def __init__(self, sm: sessionmaker[Session], *, slots: int, timeout_s: float) -> None:
        self._sm = sm
        self._slots = anyio.Semaphore(slots)
        self._timeout_s = timeout_s
        # Closing (a ROLLBACK and the connection back to the pool) is a round trip: it runs
        # in a thread, but never waits behind the routes' threads for one.
        self._closers = anyio.CapacityLimiter(slots)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        with anyio.move_on_after(self._timeout_s) as waited:
            await self._slots.acquire()
        if waited.cancelled_caught:
            raise RegistryUnavailable(
                f"the API has had no free database connection for {self._timeout_s:g} s; "
                "try again in a few seconds",
                retry_after_s=RETRY_AFTER_S,
            )
        try:
            session = self._sm()
            try:
                yield session
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(session.close, limiter=self._closers)
        finally:
            self._slots.release()


class DatabaseProbe:
    """`SELECT 1` on a connection of its own, for /healthz, through the asyncio driver: a
    probe never queues behind the requests for a thread, a connection or the GIL, and
    answers within ``timeout_s``."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._engine = make_async_engine(url, pool_size=1, max_overflow=0, pool_timeout_s=timeout_s)
        self._timeout_s = timeout_s

    async def check(self) -> None:
        """Raises RegistryUnavailable when the database does not answer in time."""
        failure: Exception | None = None
        with anyio.move_on_after(self._timeout_s) as waited:
            try:
                async with self._engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            except SQLAlchemyError as exc:
                failure = exc
        if waited.cancelled_caught or failure is not None:
            why = f"{type(failure).__name__}" if failure else f"no answer in {self._timeout_s:g} s"
            raise RegistryUnavailable(
                f"the registry database is not answering ({why})", retry_after_s=RETRY_AFTER_S
            )

    async def dispose(self) -> None:
        await self._engine.dispose()
