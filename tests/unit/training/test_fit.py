"""training/fit.py: what the spec's fit options do to a real Keras fit: early stopping,
plateau, class weights, oversampling, the epoch pipeline, validation curves, and the
held-out test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.model_selection import train_test_split

from tests.factories import mlp, model_spec
from training.builder import import_keras
from training.cv import fit_full, run_kfold
from training.data import Table, load_table
from training.fit import FitPlan, class_weights, epoch_batches, oversample
from training.hooks import Hooks
from training.pipeline import label_weights, run_training
from training.spec import ModelSpec


def _spec(**overrides: Any) -> ModelSpec:
    return model_spec(mlp(8, epochs=8, batch_size=32, k_folds=2, seed=3), **overrides)


@pytest.fixture(scope="module")
def imbalanced() -> tuple[np.ndarray, np.ndarray]:
    # One positive in ten, hard to separate: an unweighted fit under-predicts the positives.
    X, y = make_classification(
        n_samples=600,
        n_features=6,
        n_informative=3,
        weights=[0.9, 0.1],
        class_sep=0.6,
        flip_y=0.02,
        random_state=4,
    )
    return X.astype(np.float32), y.astype(np.int64)


def _mean(folds: list[Any], name: str) -> float:
    return float(np.mean([f.metrics[name] for f in folds]))


def test_early_stopping_stops_before_the_last_epoch() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    spec = _spec(
        epochs=300,
        optimizer={"name": "adam", "learning_rate": 0.05},
        validation_split=0.25,
        early_stopping={"monitor": "val_loss", "patience": 3},
    )

    folds = run_kfold(FitPlan(spec), X, y)

    for fold in folds:
        epochs_run = len(fold.history["loss"])
        assert epochs_run < 300
        # It stopped because val_loss did not improve for `patience` epochs.
        val = fold.history["val_loss"]
        best = int(np.argmin(val))
        assert epochs_run - 1 - best == 3
        # The validation rows come out of the fold's training rows: fewer rows train.
        assert fold.n_train + fold.n_val == len(y)


def test_restore_best_weights_leaves_the_model_of_the_best_epoch() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    spec = _spec(
        epochs=300,
        optimizer={"name": "adam", "learning_rate": 0.05},
        validation_split=0.25,
        early_stopping={"monitor": "val_loss", "patience": 3, "restore_best_weights": True},
    )
    curves: list[float] = []

    model = fit_full(
        FitPlan(spec, Hooks(on_epoch=lambda *a: curves.append(a[3]["val_loss"]))), X, y
    )

    # The rows fit_full held out for validation, drawn as it draws them.
    _, X_val, _, y_val = train_test_split(X, y, test_size=0.25, random_state=spec.seed, stratify=y)
    keras = import_keras()
    pred = model(X_val, training=False)
    now = float(keras.losses.BinaryCrossentropy()(y_val.astype(np.float32), pred))
    assert curves[-1] > min(curves)  # it stopped on a worse epoch ...
    assert now == pytest.approx(min(curves), rel=1e-5)  # ... and kept the best one's weights


def test_each_epoch_sees_every_row_once_in_a_new_seeded_order() -> None:
    X = np.arange(37, dtype=np.float32).reshape(37, 1)
    spec = _spec(batch_size=8, seed=5)

    def epochs(n: int) -> list[list[list[float]]]:
        dataset = epoch_batches(X, X[:, 0], spec=spec)
        return [[b[0].numpy().ravel().tolist() for b in dataset] for _ in range(n)]

    first = epochs(3)
    for batches in first:
        assert [len(b) for b in batches] == [8, 8, 8, 8, 5]  # the last batch partial
        rows = [r for b in batches for r in b]
        assert sorted(rows) == list(range(37))  # every row once
        assert rows != list(range(37))  # shuffled
    assert first[0] != first[1] != first[2]  # a new order each epoch
    assert epochs(3) == first  # the same seed, the same orders


def test_reduce_lr_on_plateau_lowers_the_learning_rate() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    spec = _spec(
        epochs=40,
        optimizer={"name": "adam", "learning_rate": 0.05},
        reduce_lr_on_plateau={"monitor": "loss", "factor": 0.5, "patience": 1, "min_lr": 1e-4},
    )

    (fold, _) = run_kfold(FitPlan(spec), X, y)

    rates = fold.history["learning_rate"]
    assert rates[0] == pytest.approx(0.05)
    assert min(rates) < 0.05
    assert min(rates) >= 1e-4 * (1 - 1e-6)
    assert all(b <= a for a, b in zip(rates, rates[1:], strict=False))


def test_balanced_class_weights_and_oversampling_raise_minority_recall(
    imbalanced: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = imbalanced
    plain = run_kfold(FitPlan(_spec()), X, y)
    weighted = run_kfold(FitPlan(_spec(class_weight="balanced")), X, y)
    resampled = run_kfold(FitPlan(_spec(oversample=True)), X, y)

    # Recall is that of class 1, the minority: both corrections trade precision for it.
    assert _mean(weighted, "recall") > _mean(plain, "recall") + 0.1
    assert _mean(resampled, "recall") > _mean(plain, "recall") + 0.1
    assert _mean(weighted, "specificity") < _mean(plain, "specificity")
    # Oversampling repeats rows only in the fit: each fold is still scored on its own rows.
    assert [f.n_val for f in resampled] == [f.n_val for f in plain]


def test_class_weights_per_label_reach_keras_by_index() -> None:
    frame = pd.DataFrame({"a": np.arange(12.0), "label": ["no", "yes", "no"] * 4})
    table = load_table(frame.to_csv(index=False).encode(), target="label", task="binary")
    spec = _spec(class_weight={"yes": 3.0, "no": 0.5}, epochs=2)
    weights = label_weights(table, spec)

    assert table.class_labels == ["no", "yes"]
    assert weights == {0: 0.5, 1: 3.0}
    assert class_weights(spec, table.y, weights) == weights


def test_balanced_weights_are_those_of_scikit_learn() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 9 + [1] * 3)
    got = class_weights(_spec(class_weight="balanced"), y, None)

    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    assert got is not None
    assert [got[0], got[1]] == pytest.approx(expected.tolist())
    assert got[1] == pytest.approx(2.0)


def test_oversample_equalises_classes_and_keeps_every_original_row() -> None:
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.array([0] * 7 + [1] * 2 + [2])

    X2, y2 = oversample(X, y, seed=0)

    assert np.bincount(y2).tolist() == [7, 7, 7]
    originals = {tuple(r) for r in X}
    assert originals <= {tuple(r) for r in X2}
    # Repeated rows keep their labels.
    for row, label in zip(X2, y2, strict=True):
        assert y[int(row[0]) // 2] == label


def test_test_split_holds_rows_out_and_scores_the_final_model() -> None:
    frame = load_breast_cancer(as_frame=True).frame
    table: Table = load_table(frame.to_csv(index=False).encode(), target="target", task="binary")
    spec = _spec(test_split=0.2, epochs=5)

    result = run_training(table, spec=spec)

    n_test = round(569 * 0.2)
    assert result.n_test == n_test
    assert all(f.n_train + f.n_val == 569 - n_test for f in result.folds)
    assert result.test_metrics is not None
    cm = np.array(result.test_metrics["confusion_matrix"])
    assert cm.sum() == n_test
    # Stratified: the class shares of the test rows are those of the table.
    assert cm.sum(axis=1)[1] / n_test == pytest.approx(frame["target"].mean(), abs=0.01)
    assert result.test_metrics["accuracy"] > 0.85  # type: ignore[operator]
    # The report: each fold's model on its validation rows, then the exported one on these.
    assert result.report is not None
    sections = result.report["sections"]
    assert [(s["source"], s["fold"], s["n_rows"]) for s in sections] == [
        *(("fold", f.fold, f.n_val) for f in result.folds),
        ("test", None, n_test),
    ]
    assert [s["metrics"] for s in sections] == [
        *(f.metrics for f in result.folds),
        result.test_metrics,
    ]
    # The held-out rows by index, for a gate to compare two versions on row by row.
    held_out = result.test_predictions
    assert held_out is not None
    assert len(set(held_out.rows.tolist())) == n_test
    np.testing.assert_array_equal(held_out.y, table.y[held_out.rows])
    assert sections[-1]["metrics"]["f1"] == result.test_metrics["f1"]
    # The reference profile: the rows the exported model trained on, the test rows out.
    assert result.profile is not None
    assert result.profile["n_rows"] == 569 - n_test
    assert sum(c["count"] for c in result.profile["classes"]) == 569 - n_test
    assert result.profile["features"][0]["name"] == "mean radius"


def test_validation_curves_are_what_keras_evaluate_reports() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    spec = _spec(epochs=4, validation_split=0.25)
    seen: list[tuple[Any, ...]] = []

    model = fit_full(FitPlan(spec, Hooks(on_epoch=lambda *a: seen.append(a))), X, y)
    _, X_val, _, y_val = train_test_split(
        X.astype(np.float32), y, test_size=0.25, random_state=spec.seed, stratify=y
    )
    expected = model.evaluate(X_val, y_val.astype(np.float32), verbose=0, return_dict=True)

    last = seen[-1][3]
    assert last["val_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert last["val_accuracy"] == pytest.approx(expected["accuracy"], rel=1e-5)
    assert [a[2] for a in seen] == [1, 2, 3, 4]
