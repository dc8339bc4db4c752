"""Engine, session factory and the declarative base shared by every table."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, String, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from registry.errors import RegistryUnavailable

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on PostgreSQL and on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E]):
    """A StrEnum stored as its plain value in a VARCHAR, read back as the member.

    Not SQLAlchemy's Enum type: that one stores member names and may add a CHECK
    constraint; this keeps the columns the migrations made (plain strings)."""

    impl = String(20)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Any) -> str | None:  # noqa: ARG002
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> E | None:  # noqa: ARG002
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


T = TypeVar("T")


def get_or_raise(session: Session, table: type[T], key: object, missing: Exception) -> T:
    """The row with this primary key, or ``missing`` raised."""
    row = session.get(table, key)
    if row is None:
        raise missing
    return row


def utcnow() -> datetime:
    return datetime.now(UTC)


# Seconds libpq waits for a connection: it would otherwise wait for the OS's TCP
# timeout (minutes) on a host that does not answer, where a request should get its 503
# (see unavailable) in seconds.
CONNECT_TIMEOUT_S = 5


def make_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout_s: float | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url``; the pool options left None keep SQLAlchemy's (5 + 10, 30 s).
    An in-memory SQLite database has one connection per thread and takes none of them."""
    kwargs = _options(url, pool_size, max_overflow, pool_timeout_s, kwargs)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        _sqlite_events(engine)
    return engine


def make_async_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout_s: float | None = None,
    **kwargs: Any,
) -> AsyncEngine:
    """The same database as ``make_engine(url)`` through an asyncio driver (psycopg's own,
    or aiosqlite), for reads that wait for the database in the event loop instead of in a
    thread. For an in-memory SQLite database it opens another, empty one."""
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite+aiosqlite"}.get(
        parsed.get_backend_name()
    )
    if driver is None:
        raise ValueError(f"no asyncio driver for {parsed.get_backend_name()!r} databases")
    async_url = parsed.set(drivername=driver).render_as_string(hide_password=False)
    kwargs = _options(url, pool_size, max_overflow, pool_timeout_s, kwargs)
    engine = create_async_engine(async_url, **kwargs)
    if url.startswith("sqlite"):
        _sqlite_events(engine.sync_engine)
    return engine


def in_memory(url: str) -> bool:
    return url.startswith("sqlite") and make_url(url).database in (None, "", ":memory:")


def _options(
    url: str,
    pool_size: int | None,
    max_overflow: int | None,
    pool_timeout_s: float | None,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    for option, value in (
        ("pool_size", pool_size),
        ("max_overflow", max_overflow),
        ("pool_timeout", pool_timeout_s),
    ):
        if value is not None and not in_memory(url):
            kwargs[option] = value
    if url.startswith("sqlite"):
        # Several processes (api, worker, predictor) share the embedded file: wait for
        # locks rather than failing at once, and let readers run beside one writer.
        kwargs.setdefault("connect_args", {"timeout": 30})
        return kwargs
    kwargs.setdefault("pool_pre_ping", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            **kwargs.get("connect_args", {}),
        }
    return kwargs


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "savepoint")
    def _begin_before_a_savepoint(conn: Any, _name: str) -> None:
        # pysqlite opens a transaction only before a write. A SAVEPOINT issued first
        # opens one itself, and its RELEASE then commits everything: a registration
        # rolled back afterwards (a cancelled job) would stay. BEGIN first makes the
        # savepoint a nested one, as on PostgreSQL; transactions still start at their
        # first write otherwise (registry.versions.lock_model relies on that).
        dbapi_conn = conn.connection.dbapi_connection
        if not dbapi_conn.in_transaction:
            dbapi_conn.execute("BEGIN")


# What a client is told to wait before asking again while the database is away: a
# restart or a failover takes seconds.
RETRY_AFTER_S = 2.0


def unavailable(exc: BaseException) -> RegistryUnavailable | None:
    """The domain error for a SQLAlchemy error that means the database cannot be reached
    now (refused or dropped connections, a server starting up or shutting down, a pool
    with no free connection), or None for any other error (a bug, a constraint).

    The message never holds the statement or its parameters: it goes to clients."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return RegistryUnavailable(
            "the registry database is not answering now; try again in a few seconds",
            retry_after_s=RETRY_AFTER_S,
        )
    return None


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
