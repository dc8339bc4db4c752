"""services/api/app.py: the app the factory builds: every route under a clean,
unique operation id, and a health route that asks the database."""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.api.app import HEALTH_TIMEOUT_S
from services.api.sessions import DatabaseProbe


def test_openapi_has_clean_unique_operation_ids(client: TestClient) -> None:
    ops = [
        op["operationId"]
        for path in client.get("/openapi.json").json()["paths"].values()
        for op in path.values()
    ]
    assert {
        "jobs-submit_job",
        "jobs-get_job",
        "datasets-upload_dataset",
        "models-get_version",
        "models-set_alias",
        "models-delete_version",
    } <= set(ops)
    # Generated clients get one method per operation: no two share a name.
    assert len(ops) == len(set(ops))
    assert all(
        op.split("-", 1)[0] in {"datasets", "jobs", "searches", "models", "keys", "health", "ops"}
        for op in ops
    )


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_healthz_answers_503_when_the_database_does_not(client: TestClient) -> None:
    app = cast(FastAPI, client.app)
    working = app.state.health
    # A PostgreSQL port nothing listens on: the probe's connection is refused.
    app.state.health = DatabaseProbe(
        "postgresql+psycopg://kiln@127.0.0.1:1/kiln", timeout_s=HEALTH_TIMEOUT_S
    )
    try:
        response = client.get("/healthz")
    finally:
        assert client.portal is not None
        client.portal.call(app.state.health.dispose)
        app.state.health = working
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "Retry-After" in response.headers
    assert "registry database is not answering" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200
