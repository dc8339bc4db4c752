"""training/pipeline.py: k-fold, refit, export and parity as one run: what a version is made of."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.metrics import roc_auc_score

from tests.factories import BINARY_MLP, mlp, model_spec
from training import pipeline
from training.builder import import_keras
from training.data import Table, load_table
from training.errors import DataError, ParityError, SpecDataMismatch
from training.hooks import FoldResult, Hooks
from training.pipeline import TrainingResult, run_training
from training.spec import ModelSpec


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _binary_spec(**overrides: object) -> ModelSpec:
    return model_spec(BINARY_MLP, **overrides)


def _regression_spec(**overrides: object) -> ModelSpec:
    base = mlp(16, task="regression", loss="huber", optimizer={"learning_rate": 0.05})
    return model_spec(base, **({"epochs": 8, "k_folds": 3} | overrides))


@pytest.fixture(scope="module")
def binary_run(cancer: Table) -> tuple[TrainingResult, list[tuple[Any, ...]], list[FoldResult]]:
    epochs: list[tuple[Any, ...]] = []
    folds: list[FoldResult] = []
    result = run_training(
        cancer,
        spec=_binary_spec(),
        hooks=Hooks(on_epoch=lambda *args: epochs.append(args), on_fold=folds.append),
    )
    return result, epochs, folds


def test_binary_pipeline_scores_well_and_exports_faithfully(
    binary_run: tuple[TrainingResult, list[tuple[Any, ...]], list[FoldResult]],
) -> None:
    result, _, _ = binary_run

    assert result.summary["f1"]["mean"] > 0.85
    assert result.parity["passed"] is True
    assert result.parity["max_abs_diff"] < 1e-4
    assert result.parity["rows"] == 569
    assert result.parity["runtime"] == f"onnxruntime {ort.__version__}"
    assert [f.fold for f in result.folds] == [1, 2, 3]
    assert sum(f.n_val for f in result.folds) == 569
    assert all(f.n_train + f.n_val == 569 for f in result.folds)
    assert set(result.library_versions) == {
        "kiln",
        "tensorflow",
        "keras",
        "tf2onnx",
        "onnx",
        "onnxruntime",
        "numpy",
        "scikit-learn",
    }
    assert result.library_versions["kiln"] == importlib.metadata.version("kiln")
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        assert result.device not in ("", "CPU")
    else:
        assert result.device == "CPU"


def test_binary_signature_layout(
    binary_run: tuple[TrainingResult, list[tuple[Any, ...]], list[FoldResult]], cancer: Table
) -> None:
    result, _, _ = binary_run

    assert result.signature == {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}],
        "kind": "table",
        "feature_names": cancer.feature_names,
        "task": "binary",
        "class_labels": [0, 1],
        "target": "target",
    }
    assert result.signature["feature_names"][0] == "mean radius"


def test_onnx_and_keras_artifacts_agree_on_probability_of_class_one(
    binary_run: tuple[TrainingResult, list[tuple[Any, ...]], list[FoldResult]], cancer: Table
) -> None:
    result, _, _ = binary_run
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])

    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["output"]
    (proba,) = session.run(["output"], {"features": cancer.X})
    assert proba.shape == (569, 1)
    assert ((proba[:, 0] >= 0.5) == (cancer.y == 1)).mean() > 0.9

    keras = import_keras()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(result.keras_bytes)
        reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(cancer.X, verbose=0), proba, atol=1e-4)


def test_progress_callbacks_report_every_epoch_and_fold(
    binary_run: tuple[TrainingResult, list[tuple[Any, ...]], list[FoldResult]],
) -> None:
    result, epochs, folds = binary_run

    assert folds == result.folds
    cv = [(fold, epoch) for phase, fold, epoch, _ in epochs if phase == "cv"]
    refit = [(fold, epoch) for phase, fold, epoch, _ in epochs if phase == "refit"]
    # The folds train together: each epoch of every fold, an epoch at a time.
    assert cv == [(f, e) for e in range(1, 11) for f in (1, 2, 3)]
    assert refit == [(None, e) for e in range(1, 11)]
    assert all(isinstance(v, float) for *_, logs in epochs for v in logs.values())
    assert "val_loss" in epochs[0][3]
    assert "val_loss" not in epochs[-1][3]
    for fold in result.folds:
        assert len(fold.history["loss"]) == 10
        assert len(fold.history["val_loss"]) == 10
        assert fold.history["val_loss"][-1] < fold.history["val_loss"][0]


def test_regression_pipeline() -> None:
    data = load_diabetes(as_frame=True).frame.iloc[:150]
    table = load_table(_csv(data), target="target", task="regression")

    result = run_training(table, spec=_regression_spec())

    assert set(result.summary) == {"mse", "rmse", "mae", "r2"}
    assert all(set(f.metrics) == {"mse", "rmse", "mae", "r2"} for f in result.folds)
    assert result.summary["rmse"]["mean"] > 0
    assert result.parity["passed"] is True
    assert result.signature["task"] == "regression"
    assert result.signature["class_labels"] is None
    assert result.signature["outputs"][0]["shape"] == [-1, 1]
    assert result.signature["inputs"][0]["shape"] == [-1, 10]


def test_multiclass_pipeline_with_string_labels() -> None:
    iris = load_iris(as_frame=True)
    frame = iris.frame.assign(target=iris.target_names[iris.target])
    table = load_table(_csv(frame), target="target", task="multiclass")
    spec = ModelSpec.model_validate(
        {
            "task": "multiclass",
            "layers": [
                {"type": "Dense", "units": 8, "activation": "tanh"},
                {"type": "Dense", "units": 3, "activation": "softmax"},
            ],
            "loss": "categorical_crossentropy",
            "optimizer": {"learning_rate": 0.05},
            "epochs": 5,
            "k_folds": 3,
        }
    )

    result = run_training(table, spec=spec)

    for fold in result.folds:
        matrix = fold.metrics["confusion_matrix"]
        assert isinstance(matrix, list)
        assert [len(row) for row in matrix] == [3, 3, 3]
        assert sum(map(sum, matrix)) == fold.n_val == 50
        # Stratified folds: each class's 50 rows are split 16/17/17 across the folds.
        assert all(sum(row) in (16, 17) for row in matrix)
    assert result.summary["accuracy"]["mean"] > 0.6
    assert result.signature["class_labels"] == ["setosa", "versicolor", "virginica"]
    assert result.signature["outputs"][0]["shape"] == [-1, 3]
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    (proba,) = session.run(["output"], {"features": table.X})
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_parity_failure_raises_with_the_difference_and_tolerance(
    cancer: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = cancer.X[:60], cancer.y[:60]
    table = Table(X, y, cancer.feature_names, cancer.class_labels, cancer.target)

    def bad_parity(model: Any, onnx_bytes: bytes, X: np.ndarray) -> dict[str, Any]:
        return {
            "max_abs_diff": 0.25,
            "max_rel_diff": 0.5,
            "tolerance": 1e-4,
            "relative_tolerance": 1e-5,
            "rows": len(X),
            "passed": False,
        }

    monkeypatch.setattr(pipeline, "check_parity", bad_parity)

    with pytest.raises(
        ParityError,
        match=r"up to 0\.25 on 60 training rows; the tolerance is 0\.0001, or 1e-05 of outputs larger than 10",
    ):
        run_training(table, spec=_binary_spec(epochs=1, k_folds=2))


def test_a_regression_on_a_target_in_the_hundred_thousands_passes_parity() -> None:
    # Prices in dollars, say: float32 holds ~1e5 only to 0.008, and an absolute 1e-4 check
    # failed this job on rounding alone (0.0625 apart).
    data = load_diabetes(as_frame=True).frame
    data["target"] *= 1000.0
    table = load_table(_csv(data), target="target", task="regression")
    spec = _regression_spec(loss="mse", optimizer={"learning_rate": 0.5}, epochs=30, k_folds=2)

    result = run_training(table, spec=spec)

    assert result.parity["passed"] is True
    assert result.parity["max_rel_diff"] <= 1e-5
    assert result.summary["r2"]["mean"] > 0  # it learned: outputs are in the target's range


def test_a_table_that_does_not_fit_the_spec_is_refused_before_training(cancer: Table) -> None:
    table = Table(cancer.X, cancer.y, cancer.feature_names, None, cancer.target)

    with pytest.raises(SpecDataMismatch, match="task 'binary' needs a target with class labels"):
        run_training(table, spec=_binary_spec(), hooks=Hooks(should_stop=pytest.fail))


def test_importing_the_training_package_does_not_load_tensorflow() -> None:
    code = (
        "import sys, training.pipeline, training.data, training.metrics, training.cv, "
        "training.export, training.builder, training.errors, training.spec, training.fit, "
        "training.parallel, training.inspect, training.provenance, training.runtime\n"
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules)\n"
        "assert not loaded, loaded"
    )
    root = Path(__file__).resolve().parents[3]

    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_codes_outside_the_embedding_are_refused_before_training() -> None:
    embedding = [{"type": "Embedding", "input_dim": 5, "output_dim": 2}, {"type": "Flatten"}]
    spec = model_spec(
        mlp(task="regression", k_folds=2), layers=[*embedding, {"type": "Dense", "units": 1}]
    )
    X = np.array([[0, 1], [4, 7], [2, 3], [1, 1]], dtype=np.float32)
    table = Table(X, np.zeros(4, dtype=np.float32), ["a", "b"], None, "y")
    with pytest.raises(DataError, match="Raise input_dim to at least 8"):
        run_training(table, spec=spec)


def test_xor_without_cross_validation_is_scored_on_its_training_rows() -> None:
    # The course's first exercise: four rows, too few to fold.
    xor = pd.DataFrame({"a": [0, 0, 1, 1], "b": [0, 1, 0, 1], "target": [0, 1, 1, 0]})
    table = load_table(_csv(xor), target="target", task="binary")
    spec = ModelSpec.model_validate(
        {
            "task": "binary",
            "loss": "binary_crossentropy",
            "layers": [
                {"type": "Dense", "units": 8, "activation": "tanh"},
                {"type": "Dense", "units": 1, "activation": "sigmoid"},
            ],
            "optimizer": {"name": "adam", "learning_rate": 0.05},
            "epochs": 300,
            "batch_size": 4,
            "seed": 1,
            "cross_validation": False,
        }
    )
    fits: list[tuple[Any, ...]] = []

    result = run_training(table, spec=spec, hooks=Hooks(on_epoch=lambda *a: fits.append(a)))

    assert result.folds == []
    assert {fit[0] for fit in fits} == {"refit"}  # one fit, on every row
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    (proba,) = session.run(["output"], {"features": table.X})
    labels = (proba[:, -1] >= 0.5).astype(int)
    # The stored figures are the exported model's scores on the rows it trained on.
    assert result.summary["accuracy"] == {"mean": float(np.mean(labels == table.y)), "std": 0.0}
    assert result.summary["accuracy"]["mean"] == 1.0  # XOR is learnt, not scored as 0
    # The report says whose rows these were.
    assert result.report is not None
    (section,) = result.report["sections"]
    assert section["source"] == "training"
    assert section["n_rows"] == 4
    assert section["metrics"]["accuracy"] == 1.0


def test_the_report_of_an_export_alone_scores_its_training_rows_or_its_test_rows(
    binary_run: tuple[TrainingResult, list[tuple[Any, ...]], list[FoldResult]], cancer: Table
) -> None:
    # A version registered before reports: only its ONNX file is left to score.
    result, _, _ = binary_run
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    (proba,) = session.run(["output"], {"features": cancer.X})

    report, held_out = pipeline.report_of_export(
        cancer, spec=_binary_spec(), onnx_bytes=result.onnx_bytes
    )

    (section,) = report["sections"]
    assert (section["source"], section["n_rows"]) == ("training", 569)
    assert section["curves"][0]["roc"]["auc"] == roc_auc_score(cancer.y, proba.reshape(-1))
    assert held_out is None  # no test rows to keep
    split = _binary_spec(test_split=0.2)
    report, held_out = pipeline.report_of_export(cancer, spec=split, onnx_bytes=result.onnx_bytes)
    (section,) = report["sections"]
    assert (section["source"], section["n_rows"]) == ("test", 114)
    # The test rows by index, their targets, and the model's outputs on them.
    assert held_out is not None
    np.testing.assert_array_equal(held_out.y, cancer.y[held_out.rows])
    (rows_out,) = session.run(["output"], {"features": cancer.X[held_out.rows]})
    np.testing.assert_allclose(held_out.output, rows_out)
