"""The control-plane API over HTTP (ASGI) on real SQLite and PostgreSQL, with a real
filesystem broker. Bad input must be refused with the right status and a message that
says what was expected, and must leave the registry unchanged."""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from registry.db import make_engine
from registry.models import Dataset, JobEvent, TrainingJob
from tests.factories import SPEC

CSV = b"a,b,label\n1.0,2.0,0\n2.0,1.0,1\n3.0,0.5,0\n4.0,2.5,1\n5.0,1.5,0\n6.0,0.1,1\n"


def counts(db_url: str) -> tuple[int, int, int]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        result = tuple(
            conn.scalar(select(func.count()).select_from(t)) or 0
            for t in (Dataset, TrainingJob, JobEvent)
        )
    engine.dispose()
    return result  # type: ignore[return-value]


def upload(client: TestClient, data: bytes, target: str = "label", ctype: str = "text/csv") -> Any:
    return client.post(
        "/datasets", files={"file": ("t.csv", io.BytesIO(data), ctype)}, data={"target": target}
    )


def test_upload_records_shape_dtypes_and_hash(client: TestClient) -> None:
    resp = upload(client, CSV)
    assert resp.status_code in (200, 201), resp.text
    body = resp.json()
    assert body["n_rows"] == 6
    assert body["n_columns"] == 3
    assert body["columns"][0] == {"name": "a", "dtype": "float64"}
    assert body["class_counts"] == {"0": 3, "1": 3}
    import hashlib

    assert body["sha256"] == hashlib.sha256(CSV).hexdigest()
    again = upload(client, CSV)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("data", "target", "ctype", "status", "needle"),
    [
        (b"", "label", "text/csv", 422, "empty"),
        (b"a,b,label\n", "label", "text/csv", 422, "0 data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "label", "text/csv", 422, "not CSV"),
        (CSV, "nope", "text/csv", 422, "target column 'nope' is not in the CSV"),
        (b"a,b,label\nx,2,0\ny,3,1\n", "label", "text/csv", 422, "feature columns must be numeric"),
        (b"a,b,label\n1,,0\n2,3,1\n", "label", "text/csv", 422, "missing values"),
        (CSV, "label", "image/png", 415, "expected text/csv"),
    ],
    ids=["empty", "header-only", "binary", "no-target", "non-numeric", "missing", "media-type"],
)
def test_bad_uploads_are_refused_and_change_nothing(
    client: TestClient, db_url: str, data: bytes, target: str, ctype: str, status: int, needle: str
) -> None:
    before = counts(db_url)
    resp = upload(client, data, target, ctype)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert needle in resp.json()["detail"]
    assert counts(db_url) == before


def job_body(**spec_changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec.update(spec_changes)
    return {"model_name": "toy", "dataset": "sklearn:breast_cancer", "spec": spec}


BAD_JOBS = [
    (job_body(layers=[{"type": "Conv9D", "units": 1}]), "layers.0"),
    (
        job_body(layers=[{"type": "Dense", "units": 4, "activation": "relux"}, SPEC["layers"][-1]]),
        "activation",
    ),
    (job_body(optimizer={"name": "adamz"}), "'sgd', 'rmsprop', 'adagrad'"),
    (job_body(loss="hinge"), "loss"),
    (job_body(loss="mse"), "does not fit task 'binary'"),
    (
        job_body(layers=[{"type": "Dense", "units": 3, "activation": "softmax"}]),
        "output layer must be Dense(units=1, activation='sigmoid')",
    ),
    (job_body(k_folds=1), "k_folds"),
    (job_body(k_folds=500), "k_folds"),
    ({**job_body(), "dataset": "sklearn:mnist"}, "no built-in dataset 'mnist'"),
    ({**job_body(), "dataset": "0" * 32}, "no dataset with id"),
    ({**job_body(), "model_name": "bad name!"}, "model_name"),
    ({**job_body(), "surprise": 1}, "surprise"),
    (
        job_body(
            task="multiclass",
            loss="sparse_categorical_crossentropy",
            layers=[{"type": "Dense", "units": 3, "activation": "softmax"}],
        ),
        "the output layer has 3 units but the target has 2 classes",
    ),
]


@pytest.mark.parametrize(("body", "needle"), BAD_JOBS)
def test_bad_jobs_are_refused_at_the_door(
    client: TestClient, db_url: str, body: dict[str, Any], needle: str
) -> None:
    # Materialise the built-in dataset first so "unchanged" compares like with like.
    client.get("/datasets/builtin")
    before = counts(db_url)
    resp = client.post("/jobs", json=body)
    assert resp.status_code in (404, 422), resp.text
    assert needle in resp.text
    after = counts(db_url)
    # A built-in dataset may be materialised by the first request; jobs never change.
    assert after[1:] == before[1:]


def test_k_larger_than_smallest_class_is_422(client: TestClient, db_url: str) -> None:
    ds = upload(client, CSV).json()
    before = counts(db_url)
    resp = client.post("/jobs", json={**job_body(k_folds=4), "dataset": ds["id"]})
    assert resp.status_code == 422
    assert "k_folds=4 is larger than the smallest class" in resp.json()["detail"]
    assert counts(db_url) == before


def test_multiclass_output_must_match_the_classes(client: TestClient) -> None:
    body = job_body(
        task="multiclass",
        loss="sparse_categorical_crossentropy",
        layers=[{"type": "Dense", "units": 4, "activation": "softmax"}],
    )
    resp = client.post("/jobs", json={**body, "dataset": "sklearn:iris"})
    assert resp.status_code == 422
    assert "expected Dense(units=3, activation='softmax')" in resp.json()["detail"]


def test_regression_target_cannot_be_classified(client: TestClient) -> None:
    resp = client.post("/jobs", json={**job_body(), "dataset": "sklearn:diabetes"})
    assert resp.status_code == 422
    assert "continuous numbers" in resp.json()["detail"]


def test_accepted_job_is_queued_and_cancellable(client: TestClient) -> None:
    resp = client.post("/jobs", json=job_body())
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    job = client.get(location).json()
    assert job["state"] == "queued"
    assert job["attempt"] == 0
    assert [e["state"] for e in job["events"]] == ["queued"]
    cancelled = client.post(f"/jobs/{job['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "only queued or running" in again.json()["detail"]


def test_unknown_things_are_404_with_the_name(client: TestClient) -> None:
    assert "no training job with id 'x'" in client.get("/jobs/x").json()["detail"]
    resp = client.get("/models/ghost/versions/1")
    assert resp.status_code == 404
    assert "no model named 'ghost'" in resp.json()["detail"]


def test_builtin_datasets_are_listed(client: TestClient) -> None:
    names = {d["name"] for d in client.get("/datasets/builtin").json()}
    assert {"breast_cancer", "iris", "wine", "digits", "diabetes"} <= names


def test_openapi_has_clean_operation_ids(client: TestClient) -> None:
    ops = {
        op["operationId"]
        for path in client.get("/openapi.json").json()["paths"].values()
        for op in path.values()
    }
    assert {
        "jobs-submit_job",
        "jobs-get_job",
        "datasets-upload_dataset",
        "models-get_version",
    } <= ops
    assert np.isfinite(len(ops))
