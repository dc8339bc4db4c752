"""services/api/app.py: the app the factory builds: every route under a clean,
unique operation id, and a liveness route."""

from __future__ import annotations

from fastapi.testclient import TestClient


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
    assert all(op.split("-", 1)[0] in {"datasets", "jobs", "models", "keys", "health"} for op in ops)


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
