"""Models the predictor benches serve, built with onnx.helper, and a throwaway registry.

No TensorFlow: the graphs are written by hand with fixed random weights, so every bench
run serves the same numbers and needs only `onnx` (the `train` extra) to build them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

# onnx 1.23 writes an IR version that onnxruntime 1.31 refuses (design.md).
IR_VERSION = 10


def build_mlp(seed: int = 0) -> tuple[bytes, dict[str, Any]]:
    """8-12-8-1 MLP (ReLU, ReLU, Sigmoid): a binary classifier on 8 features."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    sizes = [8, 12, 8, 1]
    nodes, initializers = [], []
    current = "features"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w, b = f"W{i}", f"b{i}"
        initializers += [
            numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), w),
            numpy_helper.from_array(rng.normal(size=(n_out,)).astype(np.float32), b),
        ]
        nodes += [
            helper.make_node("MatMul", [current, w], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", b], [f"a{i}"]),
        ]
        last = i == len(sizes) - 2
        out = "output" if last else f"h{i}"
        nodes.append(helper.make_node("Sigmoid" if last else "Relu", [f"a{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    signature = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, sizes[0]]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}],
        "kind": "table",
        "feature_names": [f"x{i}" for i in range(sizes[0])],
        "task": "binary",
        "class_labels": [0, 1],
        "target": "y",
    }
    return model.SerializeToString(), signature


def build_cnn(seed: int = 0) -> tuple[bytes, dict[str, Any]]:
    """Digits-sized CNN: (N, 8, 8, 1) → Conv 3×3 ×8 → ReLU → MaxPool 2 → Flatten → Dense 10 softmax.

    The input is channels-last as Keras exports it; the graph transposes to NCHW for Conv.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv_w = rng.normal(scale=0.5, size=(8, 1, 3, 3)).astype(np.float32)
    conv_b = rng.normal(scale=0.1, size=(8,)).astype(np.float32)
    dense_w = rng.normal(scale=0.3, size=(8 * 3 * 3, 10)).astype(np.float32)
    dense_b = rng.normal(scale=0.1, size=(10,)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["features"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "dense_w"], ["dense"]),
        helper.make_node("Add", ["dense", "dense_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["output"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(dense_w, "dense_w"),
            numpy_helper.from_array(dense_b, "dense_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    signature = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 8, 8, 1]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
        "kind": "image",
        "feature_names": None,
        "task": "multiclass",
        "class_labels": list(range(10)),
        "target": "digit",
    }
    return model.SerializeToString(), signature


def register(
    home: Path,
    name: str,
    onnx_bytes: bytes,
    signature: dict[str, Any],
    *,
    database_url: str = "",
) -> int:
    """Add `name`'s next version to the registry under `home` (SQLite there unless
    `database_url` names another); returns its number.

    Goes through the registry's own functions (migrations, artifact store, versions), so
    the predictor reads it exactly as it reads a trained model.
    """
    from registry import datasets, jobs, versions
    from registry.artifacts import LocalArtifactStore
    from registry.db import make_engine, make_sessionmaker
    from registry.migrate import upgrade
    from registry.models import Dataset, ModelVersion, TrainingJob
    from registry.settings import RegistrySettings

    settings = RegistrySettings(kiln_home=home, database_url=database_url)
    upgrade(settings.database_url)
    sha = LocalArtifactStore(settings.artifact_root).put(onnx_bytes)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            dataset = datasets.add_dataset(
                session,
                Dataset(
                    name=f"{name}.csv",
                    source="upload",
                    sha256=uuid.uuid4().hex * 2,
                    size_bytes=1,
                    target="y",
                    n_rows=1,
                    columns=[{"name": "y", "dtype": "int64"}],
                    class_counts=None,
                ),
            )
            spec = {"task": "bench"}
            job = jobs.add_job(
                session, TrainingJob(model_name=name, dataset_id=dataset.id, spec=spec)
            )
            row = ModelVersion(
                job_id=job.id,
                dataset_id=dataset.id,
                spec={"task": "bench"},
                metrics={},
                parity={"passed": True},
                signature=signature,
                onnx_sha256=sha,
                onnx_size_bytes=len(onnx_bytes),
                keras_sha256="0" * 64,
                library_versions={},
                device="CPU",
            )
            version = versions.register_version(session, model_name=name, row=row)
            number = version.version
            session.commit()
    finally:
        engine.dispose()
    return number
