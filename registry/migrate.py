"""Schema changes go through Alembic only, on SQLite and PostgreSQL alike (no create_all)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Not Alembic's default "alembic_version": Optuna keeps a search's study in the same
# database (workers/search_trial.py) and its own Alembic history in that default table.
VERSION_TABLE = "kiln_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s")
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    _adopt_legacy_version_table(url)
    command.upgrade(alembic_config(url), revision)


def _adopt_legacy_version_table(url: str) -> None:
    """A registry made before searches kept its revision in "alembic_version": rename
    that table, when it holds one of Kiln's revisions, before Optuna can mistake it."""
    from registry.db import make_engine

    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        if LEGACY_VERSION_TABLE not in tables or VERSION_TABLE in tables:
            return
        ours = {
            s.revision for s in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()
        }
        with engine.begin() as conn:
            current = conn.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalar()
            if current in ours:
                conn.execute(text(f"ALTER TABLE {LEGACY_VERSION_TABLE} RENAME TO {VERSION_TABLE}"))
    finally:
        engine.dispose()


def pending_revision(engine: Engine, url: str) -> str | None:
    """The head revision if the database is behind it, else None."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
    return None if current == head else head
