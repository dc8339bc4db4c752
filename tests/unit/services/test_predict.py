"""The predictor against real ONNX Runtime sessions of tiny hand-built models."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from services.predict.app import create_app
from services.predict.runtime import ModelLoadError, OnnxModel
from services.predict.source import (
    AliasNotFound,
    ModelNotFound,
    Ref,
    ResolvedModel,
    SourceUnavailable,
    VersionNotFound,
)
from services.settings import PredictSettings

F = 4
FEATURES = ["age", "height", "weight", "score"]
ROWS = np.array([[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.5, 3.0], [-2.0, 1.0, 0.0, 0.0]], np.float32)


def onnx_bytes(weights: np.ndarray, bias: np.ndarray, activation: str | None) -> bytes:
    """features (n, F) @ weights + bias, then Sigmoid / Softmax / nothing: opset 17."""
    nodes = [
        helper.make_node("MatMul", ["features", "W"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z" if activation else "output"]),
    ]
    if activation == "Sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["output"]))
    elif activation == "Softmax":
        nodes.append(helper.make_node("Softmax", ["z"], ["output"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", weights.shape[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", weights.shape[1]])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # onnx 1.23 writes an IR version that onnxruntime refuses.
    model.ir_version = 10
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized


def signature(task: str, n_out: int, labels: list[Any] | None) -> dict[str, Any]:
    return {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, F]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, n_out]}],
        "feature_names": FEATURES,
        "task": task,
        "class_labels": labels,
        "target": "y",
    }


class Tiny:
    """A model's weights, kept so tests compute the expected outputs in numpy."""

    def __init__(self, task: str, n_out: int, seed: int, labels: list[Any] | None) -> None:
        rng = np.random.default_rng(seed)
        self.task = task
        self.w = rng.normal(size=(F, n_out)).astype(np.float32)
        self.b = rng.normal(size=(n_out,)).astype(np.float32)
        self.labels = labels
        activation = {"binary": "Sigmoid", "multiclass": "Softmax"}.get(task)
        self.onnx = onnx_bytes(self.w, self.b, activation)
        self.signature = signature(task, n_out, labels)

    def expected(self, x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float64) @ self.w + self.b
        if self.task == "binary":
            return np.asarray(1.0 / (1.0 + np.exp(-z)))
        if self.task == "multiclass":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))
        return z


class MemorySource:
    def __init__(self) -> None:
        self.models: dict[str, dict[int, ResolvedModel]] = {}
        self.loads: list[tuple[str, int]] = []
        self.aliases: dict[tuple[str, str], int] = {}

    def add(self, name: str, version: int, onnx_model: bytes, sig: dict[str, Any]) -> None:
        self.models.setdefault(name, {})[version] = ResolvedModel(name, version, onnx_model, sig)

    def resolve(self, ref: Ref) -> int:
        name, alias = ref
        if name not in self.models:
            raise ModelNotFound(name, known=self.models)
        if alias is None:
            return max(self.models[name])
        if (name, alias) not in self.aliases:
            raise AliasNotFound(name, alias, known=[a for n, a in self.aliases if n == name])
        return self.aliases[(name, alias)]

    def resolve_many(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        found = {}
        for ref in refs:
            try:
                found[ref] = self.resolve(ref)
            except LookupError:
                pass
        return found

    def load(self, name: str, version: int) -> ResolvedModel:
        if name not in self.models:
            raise ModelNotFound(name, known=self.models)
        if version not in self.models[name]:
            raise VersionNotFound(name, version, known=self.models[name])
        self.loads.append((name, version))
        return self.models[name][version]


BIN_V1 = Tiny("binary", 1, seed=1, labels=["benign", "malignant"])
BIN_V2 = Tiny("binary", 1, seed=2, labels=["benign", "malignant"])
IRIS = Tiny("multiclass", 3, seed=3, labels=[0, 1, 2])
REG = Tiny("regression", 1, seed=4, labels=None)


def make_source() -> MemorySource:
    source = MemorySource()
    source.add("cancer", 1, BIN_V1.onnx, BIN_V1.signature)
    source.add("cancer", 2, BIN_V2.onnx, BIN_V2.signature)
    source.add("iris", 1, IRIS.onnx, IRIS.signature)
    source.add("diabetes", 1, REG.onnx, REG.signature)
    return source


def make_settings(tmp_path: Path, **overrides: Any) -> PredictSettings:
    return PredictSettings(kiln_home=tmp_path, predict_device="auto", **overrides)


@pytest.fixture
def source() -> MemorySource:
    return make_source()


@pytest.fixture
def client(tmp_path: Path, source: MemorySource) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        yield c


def infer_body(x: np.ndarray | list[Any], **tensor: Any) -> dict[str, Any]:
    data = x.tolist() if isinstance(x, np.ndarray) else x
    shape = list(np.shape(x))
    return {
        "inputs": [{"name": "features", "shape": shape, "datatype": "FP32", "data": data, **tensor}]
    }


def outputs_of(response: Any) -> np.ndarray:
    out = response.json()["outputs"][0]
    return np.asarray(out["data"], np.float64).reshape(out["shape"])


# --- health and metadata ---------------------------------------------------------------


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


# --- inference -------------------------------------------------------------------------


def test_infer_json_matches_numpy(client: TestClient) -> None:
    response = client.post("/v2/models/cancer/infer", json={"id": "r-1", **infer_body(ROWS)})
    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == "cancer"
    assert body["model_version"] == "2"
    assert body["id"] == "r-1"
    assert body["outputs"][0]["name"] == "output"
    assert body["outputs"][0]["datatype"] == "FP32"
    assert body["outputs"][0]["shape"] == [3, 1]
    np.testing.assert_allclose(outputs_of(response), BIN_V2.expected(ROWS), atol=1e-5)


def test_infer_without_content_type(client: TestClient) -> None:
    raw = json.dumps(infer_body(ROWS[:1])).encode()
    response = client.post("/v2/models/iris/infer", content=raw)
    assert "content-type" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 200
    np.testing.assert_allclose(outputs_of(response), IRIS.expected(ROWS[:1]), atol=1e-5)


def test_newest_and_explicit_versions(client: TestClient) -> None:
    newest = client.post("/v2/models/cancer/infer", json=infer_body(ROWS))
    v1 = client.post("/v2/models/cancer/versions/1/infer", json=infer_body(ROWS))
    assert newest.json()["model_version"] == "2"
    assert v1.json()["model_version"] == "1"
    np.testing.assert_allclose(outputs_of(newest), BIN_V2.expected(ROWS), atol=1e-5)
    np.testing.assert_allclose(outputs_of(v1), BIN_V1.expected(ROWS), atol=1e-5)


def test_nested_and_flat_data_agree(client: TestClient) -> None:
    nested = client.post("/v2/models/iris/infer", json=infer_body(ROWS))
    flat_body = infer_body(ROWS)
    flat_body["inputs"][0]["data"] = ROWS.ravel().tolist()
    flat = client.post("/v2/models/iris/infer", json=flat_body)
    assert nested.status_code == flat.status_code == 200
    assert nested.json()["outputs"] == flat.json()["outputs"]
    np.testing.assert_allclose(outputs_of(flat), IRIS.expected(ROWS), atol=1e-5)


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP64", [[1.5, -2.25, 3.0, 0.125]]),
        ("FP16", [[1.5, -2.25, 3.0, 0.125]]),
        ("INT32", [[1, -2, 3, 0]]),
        ("INT64", [[1, -2, 3, 16777216]]),
        ("BOOL", [[True, False, True, True]]),
    ],
)
def test_other_datatypes_are_converted_when_lossless(
    client: TestClient, datatype: str, data: list[list[Any]]
) -> None:
    response = client.post("/v2/models/diabetes/infer", json=infer_body(data, datatype=datatype))
    assert response.status_code == 200, response.text
    x = np.array(data, np.float32)
    np.testing.assert_allclose(outputs_of(response), REG.expected(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT64", [[1, 2, 3, 2**24 + 1]], "integers above 16777216 in magnitude do not convert"),
        ("FP64", [[1.0, 2.0, 3.0, 1e300]], "values overflow FP32"),
        ("INT32", [[1.5, 2, 3, 4]], "datatype INT32, so 'data' must hold only integers"),
        ("BOOL", [[1, 0, 1, 1]], "datatype BOOL, so 'data' must hold only true/false"),
        ("FP32", [["1", 2, 3, 4]], "datatype FP32, so 'data' must hold only numbers"),
        ("FP32", [[None, 2, 3, 4]], "must hold only numbers (no null)"),
        ("STRING", [[1, 2, 3, 4]], "datatype 'STRING' is not one of"),
    ],
)
def test_lossy_or_wrong_datatypes_are_400_and_say_what_the_model_takes(
    client: TestClient, datatype: str, data: list[list[Any]], message: str
) -> None:
    response = client.post("/v2/models/diabetes/infer", json=infer_body(data, datatype=datatype))
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error
    assert "FP32" in error or "datatype" in error


def test_requested_output_by_name(client: TestClient) -> None:
    body = {**infer_body(ROWS), "outputs": [{"name": "output"}]}
    response = client.post("/v2/models/diabetes/infer", json=body)
    assert response.status_code == 200
    np.testing.assert_allclose(outputs_of(response), REG.expected(ROWS), atol=1e-4)


def _with(body: dict[str, Any], **tensor: Any) -> dict[str, Any]:
    body["inputs"][0].update(tensor)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            _with(infer_body(ROWS), name="x"),
            "unknown input 'x'; model 'cancer' takes one input, 'features'",
        ),
        (
            _with(infer_body(ROWS), datatype="BOOL"),
            "input 'features' has datatype BOOL, so 'data' must hold only true/false",
        ),
        (
            _with(infer_body(ROWS), datatype="BYTES"),
            "input 'features' datatype 'BYTES' is not one of ['BOOL', 'UINT8'",
        ),
        (
            infer_body(ROWS[:, :3]),
            "input 'features' expects shape [-1, 4], got [3, 3]",
        ),
        (
            _with(infer_body(ROWS), shape=[1, 4]),
            "input 'features' shape [1, 4] needs 4 values, got 12 in 'data'",
        ),
        (
            _with(infer_body(ROWS), shape=[4]),
            "input 'features' expects shape [-1, 4], got [4]",
        ),
        (
            _with(infer_body(ROWS), data=[[1, 2], [3]]),
            "input 'features' data must be numbers in flat or nested lists",
        ),
        (
            _with(infer_body(ROWS[:1]), data=[1, None, 2, 3]),
            "input 'features' has datatype FP32, so 'data' must hold only numbers (no null)",
        ),
        ({"inputs": []}, "request needs 'inputs'"),
        (
            {**infer_body(ROWS), "outputs": [{"name": "probabilities"}]},
            "unknown output 'probabilities'; model 'cancer' has one output, 'output'",
        ),
    ],
)
def test_infer_bad_requests_say_expected_and_received(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    response = client.post("/v2/models/cancer/infer", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_infer_rejects_invalid_json(client: TestClient) -> None:
    response = client.post("/v2/models/cancer/infer", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("request body is not valid JSON")


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
    assert bad.json() == {"error": "version must be a positive integer, got 'latest'"}
    assert client.get("/v2/nowhere").json() == {"error": "Not Found"}


def test_binary_tensor_extension_with_tritonclient_encoding(client: TestClient) -> None:
    http = pytest.importorskip("tritonclient.http")
    x = ROWS.astype(np.float64)
    tensor = http.InferInput("features", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x, binary_data=True)
    body, header_length = http.InferenceServerClient.generate_request_body([tensor])
    assert header_length is not None
    response = client.post(
        "/v2/models/iris/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(header_length)},
    )
    assert response.status_code == 200, response.text
    result = http.InferResult.from_response_body(
        response.content,
        header_length=int(response.headers["Inference-Header-Content-Length"]),
    )
    np.testing.assert_allclose(result.as_numpy("output"), IRIS.expected(ROWS), atol=1e-5)


def test_binary_input_with_json_output(client: TestClient) -> None:
    header: dict[str, Any] = {
        "inputs": [
            {
                "name": "features",
                "shape": [3, F],
                "datatype": "FP32",
                "parameters": {"binary_data_size": ROWS.nbytes},
            }
        ],
        "outputs": [{"name": "output", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    response = client.post(
        "/v2/models/cancer/infer",
        content=head + ROWS.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(outputs_of(response), BIN_V2.expected(ROWS), atol=1e-5)

    header["inputs"][0]["parameters"] = {"binary_data_size": ROWS.nbytes - 4}
    head = json.dumps(header).encode()
    short = client.post(
        "/v2/models/cancer/infer",
        content=head + ROWS.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert short.status_code == 400
    assert "needs 48 bytes, got binary_data_size 44" in short.json()["error"]


class FailingSource(MemorySource):
    def resolve(self, ref: Ref) -> int:
        raise RuntimeError(f"registry database is down, cannot look up {ref}")


def test_unexpected_errors_are_json_500(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), source=FailingSource())
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error"}
        labels = {"route": "/v2/models/{name}/infer", "status": "500"}
        assert _sample(c.get("/metrics").text, "kiln_predict_requests_total", labels) == 1


class StoreDownSource(MemorySource):
    def load(self, name: str, version: int) -> ResolvedModel:
        raise SourceUnavailable(f"the artifact store holding {name} v{version} does not answer")


def test_an_unreachable_artifact_store_is_a_503_that_says_so(tmp_path: Path) -> None:
    source = StoreDownSource()
    source.add("cancer", 1, BIN_V1.onnx, BIN_V1.signature)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        response = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
        assert response.status_code == 503
        error = response.json()["error"]
        assert "model 'cancer' version 1 cannot be read now" in error
        assert "holding cancer v1 does not answer" in error


# --- the named-feature route -----------------------------------------------------------


def rows_payload(x: np.ndarray) -> dict[str, Any]:
    return {"rows": [dict(zip(FEATURES, map(float, row), strict=True)) for row in x]}


def test_friendly_binary_labels_and_probabilities(client: TestClient) -> None:
    response = client.post("/predict/cancer", json=rows_payload(ROWS))
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"]) == ("cancer", 2)
    assert body["provider"] == "CPUExecutionProvider"
    p = BIN_V2.expected(ROWS)[:, 0]
    for prediction, p1 in zip(body["predictions"], p, strict=True):
        assert prediction["label"] == ("malignant" if p1 > 0.5 else "benign")
        assert prediction["probabilities"]["malignant"] == pytest.approx(p1, abs=1e-5)
        assert prediction["probabilities"]["benign"] == pytest.approx(1 - p1, abs=1e-5)


def test_friendly_explicit_version(client: TestClient) -> None:
    response = client.post("/predict/cancer/versions/1", json=rows_payload(ROWS[:1]))
    assert response.json()["model_version"] == 1
    p = BIN_V1.expected(ROWS[:1])[0, 0]
    assert response.json()["predictions"][0]["probabilities"]["malignant"] == pytest.approx(
        p, abs=1e-5
    )


def test_friendly_multiclass_and_regression(client: TestClient) -> None:
    iris = client.post("/predict/iris", json=rows_payload(ROWS)).json()
    expected = IRIS.expected(ROWS)
    for prediction, probs in zip(iris["predictions"], expected, strict=True):
        assert prediction["label"] == int(probs.argmax())
        got = [prediction["probabilities"][str(label)] for label in (0, 1, 2)]
        np.testing.assert_allclose(got, probs, atol=1e-5)

    diabetes = client.post("/predict/diabetes", json=rows_payload(ROWS)).json()
    got = [p["value"] for p in diabetes["predictions"]]
    np.testing.assert_allclose(got, REG.expected(ROWS)[:, 0], atol=1e-4)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"age": 1, "height": 2, "weight": 3}],
            "row 0: missing features ['score']; expected features "
            "['age', 'height', 'weight', 'score']",
        ),
        (
            [{"age": 1, "height": 2, "weight": 3, "score": 4, "bmi": 5}],
            "row 0: unknown features ['bmi']; expected features",
        ),
        (
            [{"age": 1, "height": 2, "weight": 3, "score": 4}, {"age": 1}],
            "row 1: missing features ['height', 'weight', 'score']",
        ),
        (
            [{"age": 1, "height": 2, "weight": "heavy", "score": 4}],
            "row 0: feature 'weight' must be a finite number, got 'heavy'",
        ),
        (
            [{"age": 1, "height": 2, "weight": True, "score": 4}],
            "row 0: feature 'weight' must be a finite number, got True",
        ),
        ([], "'rows' is empty"),
    ],
)
def test_friendly_refuses_bad_rows(client: TestClient, rows: list[Any], message: str) -> None:
    response = client.post("/predict/cancer", json={"rows": rows})
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_friendly_refuses_a_body_without_rows(client: TestClient) -> None:
    response = client.post("/predict/cancer", json=[1, 2])
    assert response.status_code == 400
    assert "rows" in response.json()["error"]


# --- limits, metrics, cache ------------------------------------------------------------


def test_request_over_the_limit_is_413(tmp_path: Path, source: MemorySource) -> None:
    app = create_app(make_settings(tmp_path, predict_max_request_bytes=100), source=source)
    with TestClient(app) as c:
        big = json.dumps(infer_body(np.zeros((10, F), np.float32))).encode()
        response = c.post("/v2/models/cancer/infer", content=big)
        assert response.status_code == 413
        assert response.json() == {
            "error": f"request body of {len(big)} bytes exceeds the limit of 100 bytes "
            "(PREDICT_MAX_REQUEST_BYTES)"
        }

        chunked = c.post("/v2/models/cancer/infer", content=iter([big[:60], big[60:]]))
        assert chunked.status_code == 413
        assert chunked.json() == {
            "error": "request body exceeds the limit of 100 bytes (PREDICT_MAX_REQUEST_BYTES)"
        }

        small = json.dumps(infer_body([[0, 0, 0, 0]])).encode()
        assert len(small) <= 100
        assert c.post("/v2/models/cancer/infer", content=small).status_code == 200


def _sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_metrics_count_requests_and_loads(client: TestClient) -> None:
    client.post("/v2/models/cancer/infer", json=infer_body(ROWS))
    client.post("/v2/models/cancer/infer", json=infer_body(ROWS))
    client.post("/v2/models/nope/infer", json=infer_body(ROWS))
    text = client.get("/metrics").text
    ok = {"model": "cancer", "version": "2", "route": "/v2/models/{name}/infer", "status": "200"}
    assert _sample(text, "kiln_predict_requests_total", ok) == 2
    # An unknown name is not a label value: clients must not be able to grow the series.
    missing = {"model": "", "route": "/v2/models/{name}/infer", "status": "404"}
    assert _sample(text, "kiln_predict_requests_total", missing) == 1
    assert _sample(text, "kiln_predict_model_loads_total", {"model": "cancer"}) == 1
    assert _sample(text, "kiln_predict_loaded_models", {}) == 1
    latency = {"route": "/v2/models/{name}/infer", "model": "cancer"}
    assert _sample(text, "kiln_predict_request_duration_seconds_count", latency) == 2


def test_two_apps_have_separate_metrics(tmp_path: Path) -> None:
    with (
        TestClient(create_app(make_settings(tmp_path), source=make_source())) as a,
        TestClient(create_app(make_settings(tmp_path), source=make_source())) as b,
    ):
        a.post("/v2/models/iris/infer", json=infer_body(ROWS))
        labels = {"model": "iris", "status": "200"}
        assert _sample(a.get("/metrics").text, "kiln_predict_requests_total", labels) == 1
        assert _sample(b.get("/metrics").text, "kiln_predict_requests_total", labels) is None


def test_lru_eviction_at_max_loaded_models(tmp_path: Path, source: MemorySource) -> None:
    app = create_app(make_settings(tmp_path, predict_cache_max_models=2), source=source)
    with TestClient(app) as c:
        for path in ("cancer/versions/1", "cancer/versions/2", "cancer/versions/1", "iris"):
            assert c.post(f"/v2/models/{path}/infer", json=infer_body(ROWS)).status_code == 200
        assert app.state.model_cache.loaded() == [("cancer", 1), ("iris", 1)]
        assert source.loads == [("cancer", 1), ("cancer", 2), ("iris", 1)]

        c.post("/v2/models/cancer/versions/2/infer", json=infer_body(ROWS))
        assert source.loads[-1] == ("cancer", 2)
        assert app.state.model_cache.loaded() == [("iris", 1), ("cancer", 2)]


def test_newest_version_follows_the_registry_within_the_refresh_interval(
    tmp_path: Path,
) -> None:
    source = MemorySource()
    source.add("cancer", 1, BIN_V1.onnx, BIN_V1.signature)
    app = create_app(make_settings(tmp_path, predict_refresh_interval_s=0.05), source=source)
    with TestClient(app) as c:
        first = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
        assert first.json()["model_version"] == "1"
        source.add("cancer", 2, BIN_V2.onnx, BIN_V2.signature)
        deadline = time.monotonic() + 5
        served = "1"
        while served == "1" and time.monotonic() < deadline:
            response = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
            served = response.json()["model_version"]
        assert served == "2"


# --- runtime ---------------------------------------------------------------------------


def test_onnx_model_load_and_predict_directly() -> None:
    model = OnnxModel.load(ResolvedModel("iris", 1, IRIS.onnx, IRIS.signature), device="auto")
    assert model.provider == "CPUExecutionProvider"
    np.testing.assert_allclose(model.predict(ROWS), IRIS.expected(ROWS), atol=1e-5)


def test_onnx_model_refuses_a_signature_that_does_not_fit() -> None:
    bad = {**IRIS.signature, "feature_names": FEATURES[:3]}
    with pytest.raises(ModelLoadError, match="signature lists 3 feature_names but input"):
        OnnxModel.load(ResolvedModel("iris", 1, IRIS.onnx, bad), device="cpu")


def test_predictor_never_imports_tensorflow_or_training() -> None:
    code = (
        "import sys; from services.predict.app import create_app;"
        "import services.predict.v2, services.predict.friendly, services.predict.runtime;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf2onnx', 'training')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- N-d inputs, aliases, preload, cache bounds, batching, providers --------------------


def cnn_onnx(seed: int) -> tuple[bytes, dict[str, Any], np.ndarray, np.ndarray]:
    """(n, 4, 4, 1) images → Flatten → Dense 3 softmax: the N-d contract for images."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(16, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["features"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["z"]),
            helper.make_node("Softmax", ["z"], ["output"], axis=-1),
        ],
        "img",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, 4, 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    sig = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4, 4, 1]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
        "kind": "image",
        "feature_names": None,
        "task": "multiclass",
        "class_labels": ["a", "b", "c"],
        "target": "y",
    }
    return model.SerializeToString(), sig, w, b


IMG_ONNX, IMG_SIG, IMG_W, IMG_B = cnn_onnx(7)


def softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@pytest.fixture
def img_client(tmp_path: Path, source: MemorySource) -> Iterator[TestClient]:
    source.add("img", 1, IMG_ONNX, IMG_SIG)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        yield c


def test_image_model_takes_nd_inputs(img_client: TestClient) -> None:
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 1)).astype(np.float32)
    response = img_client.post("/v2/models/img/infer", json=infer_body(x))
    assert response.status_code == 200, response.text
    expected = softmax_rows(x.reshape(2, 16).astype(np.float64) @ IMG_W + IMG_B)
    np.testing.assert_allclose(outputs_of(response), expected, atol=1e-5)
    meta = img_client.get("/v2/models/img").json()
    assert meta["inputs"][0]["shape"] == [-1, 4, 4, 1]
    assert meta["parameters"]["kind"] == "image"

    flat = img_client.post("/v2/models/img/infer", json=infer_body(x.reshape(2, 16)))
    assert flat.status_code == 400
    assert "expects shape [-1, 4, 4, 1], got [2, 16]" in flat.json()["error"]


def test_friendly_route_refuses_an_image_model(img_client: TestClient) -> None:
    response = img_client.post("/predict/img", json={"rows": [{"a": 1}]})
    assert response.status_code == 400
    assert "takes image inputs of shape [-1, 4, 4, 1]" in response.json()["error"]
    assert "/v2/models/img/infer" in response.json()["error"]


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
    ],
)
def test_bad_model_references_are_400(client: TestClient, path: str, message: str) -> None:
    response = client.post(path, json=infer_body(ROWS))
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_preloaded_models_load_before_ready(tmp_path: Path, source: MemorySource) -> None:
    settings = make_settings(tmp_path, predict_preload="iris, cancer/1")
    with TestClient(create_app(settings, source=source)) as c:
        assert source.loads == [("iris", 1), ("cancer", 1)]
        assert c.get("/v2/health/ready").status_code == 200
        c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        assert source.loads == [("iris", 1), ("cancer", 1)]


def test_a_preload_that_cannot_load_stops_the_start(tmp_path: Path, source: MemorySource) -> None:
    settings = make_settings(tmp_path, predict_preload="nope")
    with (
        pytest.raises(Exception, match="model 'nope' not found"),
        TestClient(create_app(settings, source=source)),
    ):
        pass


def test_cache_is_bounded_by_bytes(tmp_path: Path, source: MemorySource) -> None:
    limit = len(BIN_V1.onnx) + len(IRIS.onnx) - 1  # room for one of the two at a time
    settings = make_settings(tmp_path, predict_cache_max_bytes=limit)
    with TestClient(create_app(settings, source=source)) as c:
        c.post("/v2/models/cancer/versions/1/infer", json=infer_body(ROWS))
        c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        text = c.get("/metrics").text
        assert _sample(text, "kiln_predict_loaded_models", {}) == 1
        assert _sample(text, "kiln_predict_loaded_bytes", {}) == len(IRIS.onnx)
        c.post("/v2/models/cancer/versions/1/infer", json=infer_body(ROWS))
    assert source.loads == [("cancer", 1), ("iris", 1), ("cancer", 1)]


def test_metrics_report_provider_cache_hits_and_loads(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v2/models/iris/infer", json=infer_body(ROWS))
    text = client.get("/metrics").text
    info = {"model": "iris", "version": "1", "provider": "CPUExecutionProvider"}
    assert _sample(text, "kiln_predict_model_info", info) == 1
    assert _sample(text, "kiln_predict_cache_loads_total", {}) == 1
    assert _sample(text, "kiln_predict_cache_hits_total", {}) == 2


def test_cuda_listed_but_not_given_is_reported_as_cpu(
    tmp_path: Path, source: MemorySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime-gpu without the CUDA libraries lists CUDA and then runs on the CPU.
    import onnxruntime

    from services.predict import runtime

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert runtime.choose_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert runtime.choose_providers("cpu") == ["CPUExecutionProvider"]
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        meta = c.get("/v2/models/iris").json()
        assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
        predicted = c.post("/predict/iris", json=rows_payload(ROWS)).json()
        assert predicted["provider"] == "CPUExecutionProvider"


def test_dynamic_batching_serves_concurrent_requests_with_one_run() -> None:
    import asyncio

    from services.predict.batching import Batcher

    model = OnnxModel.load(ResolvedModel("iris", 1, IRIS.onnx, IRIS.signature), device="cpu")
    batches: list[tuple[int, int]] = []
    batcher = Batcher(
        model, max_delay_s=0.05, max_size=64, on_batch=lambda _m, n, rows: batches.append((n, rows))
    )
    rows = [ROWS[i : i + 1] for i in range(3)] + [ROWS]

    async def main() -> list[np.ndarray]:
        return list(await asyncio.gather(*(batcher.submit(x) for x in rows)))

    results = asyncio.run(main())
    assert batches == [(4, 6)]
    for x, y in zip(rows, results, strict=True):
        np.testing.assert_allclose(y, IRIS.expected(x), atol=1e-5)


def test_dynamic_batching_through_the_app(tmp_path: Path, source: MemorySource) -> None:
    settings = make_settings(tmp_path, predict_batch_max_delay_us=200, predict_batch_models="iris")
    with TestClient(create_app(settings, source=source)) as c:
        response = c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        np.testing.assert_allclose(outputs_of(response), IRIS.expected(ROWS), atol=1e-5)
        assert c.get("/v2/models/iris").json()["parameters"]["dynamic_batching"] is True
        assert c.get("/v2/models/cancer").json()["parameters"]["dynamic_batching"] is False
        text = c.get("/metrics").text
        assert _sample(text, "kiln_predict_batch_rows_count", {"model": "iris"}) == 1
        assert _sample(text, "kiln_predict_batch_rows_sum", {"model": "iris"}) == 3


def test_alias_move_to_a_broken_version_keeps_serving_the_old_one(
    tmp_path: Path, source: MemorySource
) -> None:
    source.add("cancer", 3, b"not onnx", BIN_V1.signature)
    source.aliases[("cancer", "production")] = 1
    settings = make_settings(tmp_path, predict_refresh_interval_s=0.05)
    with TestClient(create_app(settings, source=source)) as c:
        url = "/v2/models/cancer@production"
        assert c.post(f"{url}/infer", json=infer_body(ROWS)).json()["model_version"] == "1"
        source.aliases[("cancer", "production")] = 3
        deadline = time.monotonic() + 5
        meta = c.get(url).json()
        while "pending_error" not in meta["parameters"] and time.monotonic() < deadline:
            time.sleep(0.05)
            meta = c.get(url).json()
        assert meta["versions"] == ["1"]
        assert meta["parameters"]["pending_version"] == 3
        assert "cannot load model 'cancer' version 3" in meta["parameters"]["pending_error"]
        assert c.post(f"{url}/infer", json=infer_body(ROWS)).json()["model_version"] == "1"
        text = c.get("/metrics").text
        failed = {"ref": "cancer@production", "version": "3"}
        assert _sample(text, "kiln_predict_alias_switch_failures_total", failed) == 1


def test_a_broken_version_is_not_rebuilt_on_every_request(
    tmp_path: Path, source: MemorySource
) -> None:
    source.add("cancer", 3, b"not onnx", BIN_V1.signature)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        for _ in range(3):
            response = c.post("/v2/models/cancer/versions/3/infer", json=infer_body(ROWS))
            assert response.status_code == 500
            assert "ONNX Runtime cannot load model 'cancer' version 3" in response.json()["error"]
    assert source.loads.count(("cancer", 3)) == 1


def test_sequence_model_checks_steps_and_features() -> None:
    rng = np.random.default_rng(9)
    w = rng.normal(size=(6, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["features"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["output"]),
        ],
        "seq",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3, 2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    sig = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 3, 2]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}],
        "kind": "sequence",
        "feature_names": ["price", "volume"],
        "window": {"steps": 3, "horizon": 1, "target": "price"},
        "task": "regression",
        "class_labels": None,
        "target": "price",
    }
    loaded = OnnxModel.load(ResolvedModel("seq", 1, model.SerializeToString(), sig), device="cpu")
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), x.reshape(4, 6) @ w, atol=1e-5)
    with pytest.raises(ModelLoadError, match="lists 3 feature_names but input 'features' has 2"):
        OnnxModel.load(
            ResolvedModel(
                "seq", 1, model.SerializeToString(), {**sig, "feature_names": ["a", "b", "c"]}
            ),
            device="cpu",
        )


def test_request_parameters_and_id_are_accepted(client: TestClient) -> None:
    body = {**infer_body(ROWS), "id": "req-7", "parameters": {"priority": 1}}
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200
    assert response.json()["id"] == "req-7"
    bad = client.post("/v2/models/iris/infer", json={**infer_body(ROWS), "parameters": [1]})
    assert bad.status_code == 400
    assert bad.json() == {"error": "'parameters' must be an object"}


def test_a_cuda_session_that_fails_falls_back_to_the_cpu(
    tmp_path: Path, source: MemorySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    real = onnxruntime.InferenceSession
    asked: list[list[str]] = []

    def session(*args: Any, providers: list[str], **kwargs: Any) -> Any:
        asked.append(providers)
        if "CUDAExecutionProvider" in providers:
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        return real(*args, providers=providers, **kwargs)

    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        response = c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        np.testing.assert_allclose(outputs_of(response), IRIS.expected(ROWS), atol=1e-5)
        meta = c.get("/v2/models/iris").json()
        assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
    assert asked == [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]
