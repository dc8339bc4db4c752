"""services/predict/access.py: every operation of the predictor's OpenAPI document, the
infer fast path included: 401 without a key, 403 with a key that lacks `predict` or the
model, success with the right one; health, metrics and server metadata stay open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.access import Grant, KeyRing, Scope, hash_token
from services.predict.app import create_app
from tests.unit.services.predict.models import (
    ROWS,
    infer_body,
    make_settings,
    make_source,
    rows_payload,
)

TOKENS = {
    "predict": Grant("k1", "app", frozenset({Scope.PREDICT})),
    "admin": Grant("k2", "root", frozenset({Scope.ADMIN})),
    "read": Grant("k3", "viewer", frozenset({Scope.READ, Scope.TRAIN})),
    "iris-only": Grant("k4", "iris-app", frozenset({Scope.PREDICT}), frozenset({"iris"})),
}
GRANTS = {hash_token(f"kiln_{name}"): grant for name, grant in TOKENS.items()}

INFER = {"json": infer_body(ROWS)}
# operationId: (method, path, request kwargs); every one needs `predict` on model cancer.
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "v2-infer": ("POST", "/v2/models/cancer/infer", INFER),
    "v2-infer_version": ("POST", "/v2/models/cancer/versions/1/infer", INFER),
    "v2-model_metadata": ("GET", "/v2/models/cancer", {}),
    "v2-model_version_metadata": ("GET", "/v2/models/cancer/versions/1", {}),
    "v2-model_ready": ("GET", "/v2/models/cancer/ready", {}),
    "v2-model_version_ready": ("GET", "/v2/models/cancer/versions/1/ready", {}),
    "predict-predict": ("POST", "/predict/cancer", {"json": rows_payload(ROWS)}),
    "predict-predict_version": ("POST", "/predict/cancer/versions/1", {"json": rows_payload(ROWS)}),
}
PUBLIC = {
    "v2-server_metadata": "/v2",
    "v2-live": "/v2/health/live",
    "v2-ready": "/v2/health/ready",
    "ops-prometheus_metrics": "/metrics",
}


def key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer kiln_{name}"}


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    keys = KeyRing(lambda: GRANTS, max_age_s=3600, required=True)
    settings = make_settings(tmp_path, kiln_auth="required")
    with TestClient(create_app(settings, source=make_source(), keys=keys)) as c:
        yield c


def test_every_operation_is_in_the_table(guarded: TestClient) -> None:
    doc = guarded.get("/openapi.json").json()
    ops = {op["operationId"]: op for ops in doc["paths"].values() for op in ops.values()}
    assert set(ops) == set(CASES) | set(PUBLIC)
    for operation in CASES:
        assert ops[operation]["security"] == [{"apiKey": ["predict"]}], operation
    assert all("security" not in ops[operation] for operation in PUBLIC)


@pytest.mark.parametrize("operation", CASES)
def test_each_operation_needs_a_key_with_predict_and_the_model(
    guarded: TestClient, operation: str
) -> None:
    method, path, kwargs = CASES[operation]
    for headers, status in (
        ({}, 401),
        (key("unknown"), 401),
        ({"Authorization": "Token kiln_predict"}, 401),
        (key("read"), 403),
        (key("iris-only"), 403),
    ):
        response = guarded.request(method, path, headers=headers, **kwargs)
        assert response.status_code == status, (headers, response.text)
        assert set(response.json()) == {"error"}
    for name in ("predict", "admin"):
        response = guarded.request(method, path, headers=key(name), **kwargs)
        assert response.status_code == 200, response.text


def test_health_metrics_and_server_metadata_stay_open(guarded: TestClient) -> None:
    for path in PUBLIC.values():
        assert guarded.get(path).status_code == 200, path


def test_a_model_limited_key_serves_its_model(guarded: TestClient) -> None:
    # Past the key check, the alias is looked up (iris has none here): a 404, not a 403.
    response = guarded.post("/v2/models/iris@production/infer", headers=key("iris-only"), **INFER)
    assert response.status_code == 404
    assert "alias 'production' of model 'iris' not found" in response.json()["error"]
    assert (
        guarded.post("/v2/models/iris/infer", headers=key("iris-only"), **INFER).status_code == 200
    )


def test_an_open_predictor_needs_no_key(tmp_path: Path) -> None:
    with TestClient(
        create_app(make_settings(tmp_path, kiln_auth="off"), source=make_source())
    ) as c:
        assert c.post("/v2/models/cancer/infer", **INFER).status_code == 200


def test_a_key_past_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    keys = KeyRing(lambda: GRANTS, max_age_s=3600, required=True)
    settings = make_settings(tmp_path, kiln_auth="required", predict_rate_limit="3/minute")
    with TestClient(create_app(settings, source=make_source(), keys=keys)) as c:
        url = "/v2/models/cancer/infer"
        answers = [c.post(url, headers=key("predict"), **INFER).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429]
        limited = c.post(url, headers=key("predict"), **INFER)
        assert "PREDICT_RATE_LIMIT" in limited.json()["error"]
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert c.post(url, headers=key("admin"), **INFER).status_code == 200  # its own budget
