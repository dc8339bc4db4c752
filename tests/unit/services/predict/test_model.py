"""services/predict/model.py: OnnxModel loaded and run directly, signatures that do not fit
the graph, and the choice of execution provider with its CPU fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from services.predict import model as model_module
from services.predict.app import create_app
from services.predict.errors import ModelLoadError
from services.predict.model import OnnxModel
from services.predict.source import ResolvedModel
from tests.unit.services.predict.models import (
    FEATURES,
    IRIS,
    ROWS,
    MemorySource,
    infer_body,
    make_settings,
    outputs_of,
    rows_payload,
)

# onnxruntime as services/predict/model.py imports it, the module whose providers are patched.
ORT = "services.predict.model.ort"


def test_onnx_model_load_and_predict_directly() -> None:
    model = OnnxModel.load(ResolvedModel("iris", 1, IRIS.onnx, IRIS.signature), device="auto")
    assert model.provider == "CPUExecutionProvider"
    np.testing.assert_allclose(model.predict(ROWS), IRIS.expected(ROWS), atol=1e-5)


def test_onnx_model_refuses_a_signature_that_does_not_fit() -> None:
    bad = {**IRIS.signature, "feature_names": FEATURES[:3]}
    with pytest.raises(ModelLoadError, match="signature lists 3 feature_names but input"):
        OnnxModel.load(ResolvedModel("iris", 1, IRIS.onnx, bad), device="cpu")


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


def test_cuda_listed_but_not_given_is_reported_as_cpu(
    tmp_path: Path, source: MemorySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime-gpu without the CUDA libraries lists CUDA and then runs on the CPU.
    monkeypatch.setattr(
        f"{ORT}.get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert model_module.choose_providers("auto") == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert model_module.choose_providers("cpu") == ["CPUExecutionProvider"]
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        meta = c.get("/v2/models/iris").json()
        assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
        predicted = c.post("/predict/iris", json=rows_payload(ROWS)).json()
        assert predicted["provider"] == "CPUExecutionProvider"


def test_a_cuda_session_that_fails_falls_back_to_the_cpu(
    tmp_path: Path, source: MemorySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = onnxruntime.InferenceSession
    asked: list[list[str]] = []

    def session(*args: Any, providers: list[str], **kwargs: Any) -> Any:
        asked.append(providers)
        if "CUDAExecutionProvider" in providers:
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        return real(*args, providers=providers, **kwargs)

    monkeypatch.setattr(
        f"{ORT}.get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(f"{ORT}.InferenceSession", session)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        response = c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        np.testing.assert_allclose(outputs_of(response), IRIS.expected(ROWS), atol=1e-5)
        meta = c.get("/v2/models/iris").json()
        assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
    assert asked == [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]
