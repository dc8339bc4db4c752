"""services/predict/infer.py: infer bodies in JSON and with binary tensors, datatypes and
their conversions, shapes, requests that do not fit, outputs, parameters and ids."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.unit.services.predict.models import (
    BIN_V1,
    BIN_V2,
    IMG_B,
    IMG_W,
    IRIS,
    REG,
    ROWS,
    F,
    infer_body,
    outputs_of,
    softmax_rows,
)


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


def test_request_parameters_and_id_are_accepted(client: TestClient) -> None:
    body = {**infer_body(ROWS), "id": "req-7", "parameters": {"priority": 1}}
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200
    assert response.json()["id"] == "req-7"
    bad = client.post("/v2/models/iris/infer", json={**infer_body(ROWS), "parameters": [1]})
    assert bad.status_code == 400
    assert bad.json() == {"error": "'parameters' must be an object"}
