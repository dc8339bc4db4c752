"""Alembic owns the schema: the models and the migration history must agree, and an
upgrade must carry a previous release's data across."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from registry.db import Base, make_engine
from registry.migrate import VERSION_TABLE, upgrade
from tests.conftest import create_pg_database, drop_pg_database, pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = create_pg_database()
    yield pg_url(name)
    drop_pg_database(name)


def test_models_match_the_migrations(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_a_registry_from_before_searches_keeps_its_revision_beside_optuna(
    empty_url: str,
) -> None:
    """Kiln's revision used to live in Alembic's default table, which Optuna's study
    storage also uses: an upgrade moves it, and Optuna then sets up its own tables."""
    import optuna

    upgrade(empty_url, "0006")
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {VERSION_TABLE} RENAME TO alembic_version"))
    upgrade(empty_url)
    with engine.connect() as conn:
        ours = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        tables = set(sa.inspect(conn).get_table_names())
    assert "alembic_version" not in tables
    optuna.create_study(study_name="beside-kiln", storage=empty_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == ours
        assert {"studies", "trials"} <= set(sa.inspect(conn).get_table_names())
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert ours == context.get_current_revision()
    # A later upgrade finds nothing to do and leaves Optuna's tables alone.
    upgrade(empty_url)
    with engine.connect() as conn:
        assert "studies" in set(sa.inspect(conn).get_table_names())
    engine.dispose()


def test_upgrade_keeps_the_first_release_data(empty_url: str) -> None:
    upgrade(empty_url, "0001")
    engine = make_engine(empty_url)
    ds_id, job_id = uuid.uuid4().hex, uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO dataset (id, name, source, sha256, size_bytes, target, n_rows, n_columns,"
                " columns, class_counts, created_at) VALUES (:id, 'd.csv', 'upload', :sha, 10, 'y', 150,"
                " 5, '[]', '{\"0\": 75, \"1\": 75}', CURRENT_TIMESTAMP)"
            ),
            {"id": ds_id, "sha": "a" * 64},
        )
        conn.execute(
            sa.text(
                "INSERT INTO training_job (id, model_name, dataset_id, spec, state, attempt, created_at)"
                " VALUES (:id, 'm', :ds, '{}', 'succeeded', 1, CURRENT_TIMESTAMP)"
            ),
            {"id": job_id, "ds": ds_id},
        )
        conn.execute(
            sa.text(
                "INSERT INTO registered_model (name, created_at) VALUES ('m', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO model_version (registered_model_id, version, job_id, dataset_id, spec, metrics,"
                " parity, signature, onnx_sha256, onnx_size_bytes, keras_sha256, library_versions, device,"
                " created_at) SELECT id, 1, :job, :ds, '{}', '{}', '{}', '{}', :sha, 1, :sha, '{}', 'CPU',"
                " CURRENT_TIMESTAMP FROM registered_model WHERE name = 'm'"
            ),
            {"job": job_id, "ds": ds_id, "sha": "b" * 64},
        )
    upgrade(empty_url)
    with engine.connect() as conn:
        kind, shape = conn.execute(
            sa.text("SELECT kind, shape FROM dataset WHERE id = :id"), {"id": ds_id}
        ).one()
        version = conn.execute(sa.text("SELECT version, archived_at FROM model_version")).one()
        aliases = conn.scalar(sa.text("SELECT count(*) FROM alias"))
    engine.dispose()
    assert kind == "table"
    assert (shape if isinstance(shape, list) else __import__("json").loads(shape)) == [150, 4]
    assert tuple(version) == (1, None)
    assert aliases == 0
