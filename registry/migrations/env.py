"""Alembic environment. The URL comes from the caller (registry.migrate), never from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from registry import models  # noqa: F401  (registers the tables on Base.metadata)
from registry.db import Base, make_engine
from registry.migrate import VERSION_TABLE

config = context.config
target_metadata = Base.metadata


def _ours(name: str | None, type_: str, _parents: object) -> bool:
    return type_ != "table" or name in target_metadata.tables


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode copies a table and drops the old one; with foreign keys on, SQLite
        # refuses to drop a table others point at. The pragma only works outside a
        # transaction, and the check below proves the copy kept every reference whole.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Batch mode rewrites ALTERs as table copies on SQLite, so one history runs on both.
        render_as_batch=True,
        compare_type=True,
        version_table=VERSION_TABLE,
        # Tables that are not Kiln's (Optuna's study tables) are never Kiln's to drop.
        include_name=_ours,
    )
    with context.begin_transaction():
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left dangling foreign keys: {broken}")
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `kiln db upgrade`")
run_migrations_online()
