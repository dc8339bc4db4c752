"""services/predict/v2.py: health, server and model metadata, readiness, the documented
routes, aliases in every route, and references that name nothing or make no sense."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.unit.services.predict.models import (
    BIN_V1,
    FEATURES,
    ROWS,
    F,
    MemorySource,
    infer_body,
    outputs_of,
    rows_payload,
)


def test_health_live_and_ready(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_server_metadata(client: TestClient) -> None:
    body = client.get("/v2").json()
    assert body["name"] == "kiln"
    assert body["extensions"] == ["binary_tensor_data"]
    assert isinstance(body["version"], str)


def test_model_metadata_reports_real_provider_and_signature(client: TestClient) -> None:
    body = client.get("/v2/models/cancer").json()
    assert body["name"] == "cancer"
    assert body["versions"] == ["2"]
    assert body["platform"] == "onnxruntime_onnx"
    assert body["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, F]}]
    assert body["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}]
    params = body["parameters"]
    assert params["execution_provider"] == "CPUExecutionProvider"
    assert params["feature_names"] == FEATURES
    assert params["class_labels"] == ["benign", "malignant"]
    assert params["task"] == "binary"

    v1 = client.get("/v2/models/cancer/versions/1").json()
    assert v1["versions"] == ["1"]


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/predict/{name}",
        "/predict/{name}/versions/{version}",
        "/metrics",
    } <= set(paths)
    assert paths["/v2/models/{name}/infer"]["post"]["operationId"] == "v2-infer"


def test_model_ready(client: TestClient, source: MemorySource) -> None:
    assert client.get("/v2/models/iris/ready").json() == {
        "name": "iris",
        "version": "1",
        "ready": True,
    }
    assert client.get("/v2/models/cancer/versions/1/ready").status_code == 200
    assert client.get("/v2/models/nope/ready").status_code == 404
    assert client.get("/v2/models/cancer/versions/9/ready").status_code == 404

    source.add("broken", 1, b"not onnx", BIN_V1.signature)
    broken = client.get("/v2/models/broken/ready")
    assert broken.status_code == 503
    assert "ONNX Runtime cannot load model 'broken' version 1" in broken.json()["error"]
    assert client.post("/v2/models/broken/infer", json=infer_body(ROWS)).status_code == 500


def test_alias_in_every_model_route(client: TestClient, source: MemorySource) -> None:
    source.aliases[("cancer", "production")] = 1
    infer = client.post("/v2/models/cancer@production/infer", json=infer_body(ROWS))
    assert infer.json()["model_version"] == "1"
    np.testing.assert_allclose(outputs_of(infer), BIN_V1.expected(ROWS), atol=1e-5)
    meta = client.get("/v2/models/cancer@production").json()
    assert meta["versions"] == ["1"]
    assert meta["parameters"]["alias"] == "production"
    ready = client.get("/v2/models/cancer@production/ready")
    assert ready.json() == {"name": "cancer", "version": "1", "ready": True}
    friendly = client.post("/predict/cancer@production", json=rows_payload(ROWS[:1]))
    assert friendly.json()["model_version"] == 1


def test_unknown_model_and_version_are_404_and_name_what_exists(client: TestClient) -> None:
    model = client.post("/v2/models/nope/infer", json=infer_body(ROWS))
    assert model.status_code == 404
    assert model.json() == {
        "error": "model 'nope' not found; known models: ['cancer', 'diabetes', 'iris']"
    }
    version = client.post("/v2/models/cancer/versions/7/infer", json=infer_body(ROWS))
    assert version.status_code == 404
    assert version.json() == {
        "error": "version 7 of model 'cancer' not found; available versions: [1, 2]"
    }
    bad = client.get("/v2/models/cancer/versions/latest")
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "version must be a positive integer (at most 2147483647), got 'latest'"
    }
    assert client.get("/v2/nowhere").json() == {"error": "Not Found"}


def test_unknown_alias_is_404_and_lists_the_aliases(
    client: TestClient, source: MemorySource
) -> None:
    source.aliases[("cancer", "production")] = 1
    response = client.post("/v2/models/cancer@staging/infer", json=infer_body(ROWS))
    assert response.status_code == 404
    assert response.json() == {
        "error": "alias 'staging' of model 'cancer' not found; its aliases: ['production']"
    }


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v2/models/cancer@production/versions/1/infer", "not both"),
        ("/v2/models/cancer@/infer", "must be 'name' or 'name@alias'"),
        ("/v2/models/cancer/versions/0/infer", "version must be a positive integer"),
        ("/v2/models/cancer/versions/2147483648/infer", "(at most 2147483647)"),
        ("/v2/models/cancer%00x/infer", "holds a NUL character"),
    ],
)
def test_bad_model_references_are_400(client: TestClient, path: str, message: str) -> None:
    response = client.post(path, json=infer_body(ROWS))
    assert response.status_code == 400
    assert message in response.json()["error"]
