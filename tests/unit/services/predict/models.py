"""Tiny hand-built ONNX models, an in-memory model source and helpers the predictor tests share.

Fixtures are in conftest.py; this module holds what tests import by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from registry.errors import AliasNotFound, ModelNotFound, VersionNotFound
from services.predict.source import (
    Ref,
    ResolvedModel,
    alias_not_found,
    model_not_found,
    version_not_found,
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
            raise model_not_found(name, known=self.models)
        if alias is None:
            return max(self.models[name])
        if (name, alias) not in self.aliases:
            raise alias_not_found(name, alias, known=[a for n, a in self.aliases if n == name])
        return self.aliases[(name, alias)]

    def resolve_many(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        found = {}
        for ref in refs:
            try:
                found[ref] = self.resolve(ref)
            except (ModelNotFound, AliasNotFound, VersionNotFound):
                pass
        return found

    def existing(self, loaded: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        return {(name, v) for name, v in loaded if v in self.models.get(name, {})}

    def load(self, name: str, version: int) -> ResolvedModel:
        if name not in self.models:
            raise model_not_found(name, known=self.models)
        if version not in self.models[name]:
            raise version_not_found(name, version, known=self.models[name])
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


def infer_body(x: np.ndarray | list[Any], **tensor: Any) -> dict[str, Any]:
    data = x.tolist() if isinstance(x, np.ndarray) else x
    shape = list(np.shape(x))
    return {
        "inputs": [{"name": "features", "shape": shape, "datatype": "FP32", "data": data, **tensor}]
    }


def outputs_of(response: Any) -> np.ndarray:
    out = response.json()["outputs"][0]
    return np.asarray(out["data"], np.float64).reshape(out["shape"])


def rows_payload(x: np.ndarray) -> dict[str, Any]:
    """Rows of named features for the /predict/{model} route."""
    return {"rows": [dict(zip(FEATURES, map(float, row), strict=True)) for row in x]}


def metric_sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of the first sample of `name` whose labels include `labels`, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


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
