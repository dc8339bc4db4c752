"""The one entry point the worker calls: cross-validate, refit, export, check, package.

Importing this module does not load TensorFlow; the first call does.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.cv import fit_full, fold_splits, folds_sha256, run_kfold
from training.data import Table
from training.errors import DataError, ParityError
from training.export import INPUT_NAME, OUTPUT_NAME, check_parity, to_onnx
from training.fit import FitPlan, hold_out, metrics_of, predict
from training.hooks import FoldResult, Hooks
from training.metrics import MetricValue, summarize
from training.profile import reference_profile
from training.provenance import device_name, library_versions
from training.report import Scored, evaluation_report
from training.spec import ModelSpec, check_against_data
from training.spec.layers import Embedding
from training.stacked import why_not


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
    # training.cv.folds_sha256 of the folds; None without cross-validation.
    folds_sha256: str | None = None
    # training.report.evaluation_report of the folds, the test rows or the training rows.
    report: dict[str, Any] | None = None
    # The exported model on the test rows, row by row; None without a test split.
    test_predictions: HeldOutPredictions | None = None
    # training.profile.reference_profile of the rows the exported model trained on.
    profile: dict[str, Any] | None = None


@dataclass(frozen=True)
class HeldOutPredictions:
    """Which rows of the table `test_split` held out, their targets and the exported
    model's outputs on them: what a gate compares two versions on, row by row."""

    rows: np.ndarray
    y: np.ndarray
    output: np.ndarray


def run_training(
    table: Table, *, spec: ModelSpec, hooks: Hooks | None = None, fold_processes: int = 1
) -> TrainingResult:
    """Cross-validate, refit, export and check ``spec`` on ``table``.

    ``fold_processes`` > 1 trains folds in that many processes at once when the fits are
    big enough to pay for starting them (``training.cv.fold_process_count``).
    """
    _check_table(table, spec)
    plan = FitPlan(spec, hooks or Hooks(), label_weights(table, spec))
    X, y, X_test, y_test = _split_test(table, spec)
    # Without cross-validation (data too small to fold) the metrics are the refit's scores
    # on its own training rows; the version says so (its spec's cross_validation).
    folds = run_kfold(plan, X, y, processes=fold_processes) if spec.cross_validation else []
    model = fit_full(plan, X, y)
    scored = [
        Scored("fold", f.y_true, f.output, f.fold)
        for f in folds
        if f.y_true is not None and f.output is not None
    ]
    if not spec.cross_validation:
        scored.append(Scored("training", y, predict(model, np.asarray(X, dtype=np.float32))))
    summary = summarize([f.metrics for f in folds] or [metrics_of(spec, y, scored[-1].output)])
    test_metrics = None
    test_predictions = None
    if X_test is not None and y_test is not None:
        scored.append(Scored("test", y_test, predict(model, np.asarray(X_test, dtype=np.float32))))
        test_metrics = metrics_of(spec, y_test, scored[-1].output)
        test_predictions = HeldOutPredictions(held_out_rows(table, spec), y_test, scored[-1].output)
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
        signature=signature(table, spec),
        library_versions=library_versions(),
        device=device_name(),
        test_metrics=test_metrics,
        n_test=0 if y_test is None else len(y_test),
        folds_sha256=fold_assignment(table, spec) if spec.cross_validation else None,
        report=evaluation_report(spec, scored, class_labels=table.class_labels),
        test_predictions=test_predictions,
        profile=_profile(table, X, y),
    )


def cross_validate(
    table: Table,
    *,
    spec: ModelSpec,
    hooks: Hooks | None = None,
    fold_processes: int = 1,
    together: bool = True,
) -> list[FoldResult]:
    """Only the k-fold of `run_training` (a search's trial): the same folds, no refit.
    ``together`` False trains the folds one by one even where they could train at once, so
    that each ends on its own (a pruned trial stops between folds)."""
    _check_table(table, spec)
    plan = FitPlan(spec, hooks or Hooks(), label_weights(table, spec))
    X, y, _, _ = _split_test(table, spec)
    return run_kfold(plan, X, y, processes=fold_processes, together=together)


def report_of_export(
    table: Table, *, spec: ModelSpec, onnx_bytes: bytes
) -> tuple[dict[str, Any], HeldOutPredictions | None]:
    """The evaluation report of an exported model alone, for a version registered before
    reports, and its test predictions: its fold models were never kept, so the report
    covers the rows `test_split` held out, or without a test split every row the model
    trained on (marked "training")."""
    import onnxruntime as ort

    _check_table(table, spec)
    X, y, X_test, y_test = _split_test(table, spec)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])

    def outputs(rows: np.ndarray) -> np.ndarray:
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(rows, dtype=np.float32)})
        return np.asarray(out)

    predictions = None
    if X_test is not None and y_test is not None:
        scored = [Scored("test", y_test, outputs(X_test))]
        predictions = HeldOutPredictions(held_out_rows(table, spec), y_test, scored[0].output)
    else:
        scored = [Scored("training", y, outputs(X))]
    return evaluation_report(spec, scored, class_labels=table.class_labels), predictions


def training_profile(table: Table, spec: ModelSpec) -> dict[str, Any]:
    """The reference profile of the rows `run_training` refits on (all but the test rows)."""
    X, y, _, _ = _split_test(table, spec)
    return _profile(table, X, y)


def _profile(table: Table, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return reference_profile(
        X,
        y,
        feature_names=table.feature_names,
        class_labels=table.class_labels,
        kind=table.kind.value,
    )


def held_out_rows(table: Table, spec: ModelSpec) -> np.ndarray:
    """The indices of the rows (or windows) `test_split` holds out, in their held-out
    order: the same for every spec with the same test_split, seed and task on the data."""
    _, rows, _, _ = hold_out(np.arange(len(table.y)), table.y, share=spec.test_split, spec=spec)
    return np.asarray(rows, dtype=np.int64)


def folds_train_together(table: Table, spec: ModelSpec) -> bool:
    """Whether `run_training` and `cross_validate` train this spec's folds at once."""
    _, y, _, _ = _split_test(table, spec)
    return why_not(spec, n_rows=len(y), item_shape=table.X.shape[1:]) is None


def fold_assignment(table: Table, spec: ModelSpec) -> str:
    """training.cv.folds_sha256 of the folds `run_training` and `cross_validate` use."""
    _, y, _, _ = _split_test(table, spec)
    return folds_sha256(fold_splits(y, spec=spec))


def _split_test(
    table: Table, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(rows to fold and refit on, their targets, test rows, test targets)."""
    if spec.test_split <= 0:
        return table.X, table.y, None, None
    # Carved out before k-fold: neither the folds nor the refit ever see these rows.
    X, X_test, y, y_test = hold_out(table.X, table.y, share=spec.test_split, spec=spec)
    return X, y, X_test, y_test


def label_weights(table: Table, spec: ModelSpec) -> dict[int, float] | None:
    """The spec's per-label class weights keyed by the class index the model is trained on."""
    if not isinstance(spec.class_weight, dict) or table.class_labels is None:
        return None
    return {i: spec.class_weight[str(label)] for i, label in enumerate(table.class_labels)}


def _check_table(table: Table, spec: ModelSpec) -> None:
    # The API checked the spec against the stored dataset; the same check on the arrays
    # loaded here catches a table loaded for another task or window, and the Embedding's
    # codes can only be checked on the values.
    if table.X.shape[0] != table.y.shape[0] or (
        table.feature_names is not None and len(table.feature_names) != table.X.shape[-1]
    ):
        raise DataError(
            f"{table.kind} features {table.X.shape}, target {table.y.shape} and feature names "
            f"{table.feature_names} do not line up"
        )
    check_against_data(spec, table.info())
    first = spec.layers[0]
    if isinstance(first, Embedding):
        X = table.X
        if X.min() < 0 or X.max() >= first.input_dim:
            raise DataError(
                f"layers.0 (Embedding) looks up codes 0 .. {first.input_dim - 1}; the features "
                f"hold values from {X.min():g} to {X.max():g}. Raise input_dim to at least "
                f"{int(X.max()) + 1} or re-encode the columns"
            )


def signature(table: Table, spec: ModelSpec) -> dict[str, Any]:
    """The contract with the predictor: one input [-1, *item_shape], one output.

    item_shape is [F] for a table, [H, W, C] for images, [steps, F] for a sequence;
    feature_names is None for images; "window" is there for sequences only.
    """
    item_shape = [int(d) for d in table.X.shape[1:]]
    result: dict[str, Any] = {
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *item_shape]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, spec.n_outputs]}],
        "kind": table.kind.value,
        "feature_names": None if table.feature_names is None else list(table.feature_names),
        "task": spec.task.value,
        "class_labels": None if table.class_labels is None else list(table.class_labels),
        "target": table.target,
    }
    if table.window is not None:
        result["window"] = dict(table.window)
    return result


def _keras_bytes(model: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="kiln-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()
