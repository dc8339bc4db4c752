"""The one entry point the worker calls: cross-validate, refit, export, check, package.

Importing this module does not load TensorFlow; the first call does.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from training.builder import import_keras
from training.cv import (
    FoldResult,
    OnEpoch,
    OnFold,
    ShouldStop,
    fit_full,
    n_classes_of,
    run_kfold,
    score,
)
from training.data import Table
from training.errors import DataError, ParityError
from training.export import INPUT_NAME, OUTPUT_NAME, check_parity, to_onnx
from training.metrics import MetricValue, summarize
from training.spec import Embedding, ModelSpec


@dataclass(frozen=True)
class TrainingResult:
    folds: list[FoldResult]
    summary: dict[str, dict[str, float]]
    onnx_bytes: bytes
    keras_bytes: bytes
    parity: dict[str, Any]
    signature: dict[str, Any]
    library_versions: dict[str, str]
    device: str
    # Scores of the exported model on the rows `test_split` held out; None without one.
    test_metrics: dict[str, MetricValue] | None = None
    n_test: int = 0


def run_training(
    table: Table,
    *,
    spec: ModelSpec,
    on_epoch: OnEpoch | None = None,
    on_fold: OnFold | None = None,
    should_stop: ShouldStop | None = None,
    fold_processes: int = 1,
) -> TrainingResult:
    """Cross-validate, refit, export and check ``spec`` on ``table``.

    ``fold_processes`` > 1 trains folds in that many processes at once when the fits are
    big enough to pay for starting them (``training.cv.fold_process_count``).
    """
    _check_table(table, spec)
    X, y = table.X, table.y
    X_test = y_test = None
    if spec.test_split > 0:
        # Carved out before k-fold: neither the folds nor the refit ever see these rows.
        X, X_test, y, y_test = train_test_split(
            X,
            y,
            test_size=spec.test_split,
            random_state=spec.seed,
            stratify=None if spec.task == "regression" else y,
        )
    weights = label_weights(table, spec)
    folds = run_kfold(
        X,
        y,
        spec=spec,
        on_epoch=on_epoch,
        should_stop=should_stop,
        on_fold=on_fold,
        label_weights=weights,
        processes=fold_processes,
    )
    summary = summarize([f.metrics for f in folds])
    model = fit_full(
        X, y, spec=spec, on_epoch=on_epoch, should_stop=should_stop, label_weights=weights
    )
    test_metrics = None
    if X_test is not None and y_test is not None:
        test_metrics = score(model, X_test, y_test, spec=spec)
    onnx_bytes = to_onnx(model, input_shape=table.X.shape[1:])
    parity = check_parity(model, onnx_bytes, table.X)
    if not parity["passed"]:
        raise ParityError(
            f"the ONNX export differs from the Keras model by up to {parity['max_abs_diff']:.3g} "
            f"on {parity['rows']} training rows; the tolerance is {parity['tolerance']:g}, or "
            f"{parity['relative_tolerance']:g} of outputs larger than "
            f"{parity['tolerance'] / parity['relative_tolerance']:g}. "
            "A layer or activation in this spec may not export faithfully; report it with the spec"
        )
    return TrainingResult(
        folds=folds,
        summary=summary,
        onnx_bytes=onnx_bytes,
        keras_bytes=_keras_bytes(model),
        parity=parity,
        signature=_signature(table, spec),
        library_versions=library_versions(),
        device=device_name(),
        test_metrics=test_metrics,
        n_test=0 if y_test is None else len(y_test),
    )


def label_weights(table: Table, spec: ModelSpec) -> dict[int, float] | None:
    """The spec's per-label class weights keyed by the class index the model is trained on."""
    if not isinstance(spec.class_weight, dict) or table.class_labels is None:
        return None
    return {i: spec.class_weight[str(label)] for i, label in enumerate(table.class_labels)}


def _check_table(table: Table, spec: ModelSpec) -> None:
    # The API checks spec against data before queueing; this catches a worker handed
    # a table loaded for another task, which would otherwise train on garbage.
    rank = {"table": 2, "sequence": 3, "image": 4}.get(table.kind)
    if rank is None or table.X.ndim != rank or table.X.shape[0] != table.y.shape[0]:
        raise DataError(
            f"{table.kind} features {table.X.shape} and target {table.y.shape} do not line up"
        )
    if table.feature_names is not None and len(table.feature_names) != table.X.shape[-1]:
        raise DataError(
            f"{len(table.feature_names)} feature names for {table.X.shape[-1]} features"
        )
    first = spec.layers[0]
    if isinstance(first, Embedding):
        X = table.X
        if not np.all(np.mod(X, 1) == 0) or X.min() < 0 or X.max() >= first.input_dim:
            raise DataError(
                f"layers.0 (Embedding) looks up codes 0 .. {first.input_dim - 1}; the features "
                f"hold values from {X.min():g} to {X.max():g}"
                + ("" if np.all(np.mod(X, 1) == 0) else ", not all integers")
                + f". Raise input_dim to at least {int(X.max()) + 1} or re-encode the columns"
            )
    if (table.kind == "sequence") != (spec.window is not None):
        raise DataError(
            f"the spec {'has' if spec.window else 'has no'} window but the data is a {table.kind}"
        )
    if spec.task == "regression":
        if table.class_labels is not None:
            raise DataError("task 'regression' was given a table loaded with class labels")
        return
    n_classes = n_classes_of(spec)
    if table.class_labels is None or len(table.class_labels) != n_classes:
        found = "none" if table.class_labels is None else len(table.class_labels)
        raise DataError(
            f"task {spec.task!r} with this output layer needs {n_classes} class labels; "
            f"the table has {found}"
        )


def _signature(table: Table, spec: ModelSpec) -> dict[str, Any]:
    """The contract with the predictor: one input [-1, *item_shape], one output.

    item_shape is [F] for a table, [H, W, C] for images, [steps, F] for a sequence;
    feature_names is None for images; "window" is there for sequences only.
    """
    item_shape = [int(d) for d in table.X.shape[1:]]
    n_outputs = spec.n_outputs
    signature: dict[str, Any] = {
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *item_shape]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, n_outputs]}],
        "kind": table.kind,
        "feature_names": None if table.feature_names is None else list(table.feature_names),
        "task": spec.task,
        "class_labels": None if table.class_labels is None else list(table.class_labels),
        "target": table.target,
    }
    if table.window is not None:
        signature["window"] = dict(table.window)
    return signature


def _keras_bytes(model: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="kiln-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()


def library_versions() -> dict[str, str]:
    keras = import_keras()
    import numpy
    import onnx
    import onnxruntime
    import sklearn
    import tensorflow as tf
    import tf2onnx

    return {
        "kiln": _kiln_version(),
        "tensorflow": str(tf.__version__),
        "keras": str(keras.__version__),
        "tf2onnx": str(tf2onnx.__version__),
        "onnx": str(onnx.__version__),
        "onnxruntime": str(onnxruntime.__version__),
        "numpy": str(numpy.__version__),
        "scikit-learn": str(sklearn.__version__),
    }


def _kiln_version() -> str:
    try:
        return importlib.metadata.version("kiln")
    except importlib.metadata.PackageNotFoundError:
        # Running from a source tree that was never installed.
        return "unknown"


def device_name() -> str:
    """Return "CPU", or the name TensorFlow reports for the first GPU it trains on."""
    import_keras()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return str(details.get("device_name", gpus[0].name))
