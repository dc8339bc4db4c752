"""Registry sessions on real SQLite and real PostgreSQL, rolled back after every test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from registry.db import make_engine
from registry.migrate import upgrade

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from services.settings import ApiSettings

PG_ADMIN_URL = os.environ.get("KILN_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def require_server(what: str, probe: Callable[[], object]) -> None:
    """Skip (locally) or fail (under CI=true) when a server the test needs is not answering."""
    try:
        probe()
    except Exception as exc:
        message = f"{what} is not answering ({exc}); start it as the README says"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def create_pg_database() -> str:
    require_server(
        "PostgreSQL on 127.0.0.1:5432",
        lambda: psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close(),
    )
    name = f"kiln_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("registry") / "kiln.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = create_pg_database()
    url = pg_url(name)
    upgrade(url)
    yield url
    drop_pg_database(name)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back after the test."""
    with engine.connect() as conn:
        outer = conn.begin()
        s = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield s
        finally:
            s.close()
            outer.rollback()


@pytest.fixture
def own_db(tmp_path: Path) -> str:
    """A registry of the test's own (a SQLite file): a built-in dataset that another test's
    API materialised would point at an artifact in that test's store."""
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    upgrade(url)
    return url


def api_settings(home: Path, database_url: str, **overrides: object) -> ApiSettings:
    """The settings of an in-process API in a test: its files under ``home``, the
    filesystem broker, and a sweeper that never runs during the test."""
    from services.settings import ApiSettings

    fields: dict[str, object] = {"redis_url": None, "job_sweep_interval_s": 3600}
    return ApiSettings(kiln_home=home, database_url=database_url, **(fields | overrides))  # type: ignore[arg-type]


@pytest.fixture
def own_api(tmp_path: Path, own_db: str) -> Iterator[tuple[TestClient, ApiSettings]]:
    """The API in-process on its own registry, artifact folder and filesystem broker
    (under tmp_path), without the sweeper's thread."""
    from fastapi.testclient import TestClient

    from services.api.app import create_app

    settings = api_settings(tmp_path, own_db)
    with TestClient(create_app(settings)) as client:
        yield client, settings
