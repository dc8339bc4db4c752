"""Fold metrics, all computed by scikit-learn, in shapes that serialise to JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

MetricValue = float | None | list[list[int]]


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, *, n_classes: int
) -> dict[str, MetricValue]:
    """Score class probabilities against class indices 0..n_classes-1.

    Binary: ``proba`` is P(class 1), shape [n] or [n, 1], thresholded at 0.5; precision,
    recall and f1 are those of class 1. Multiclass: ``proba`` is [n, C]; the scores are
    macro averages over the classes present in ``y_true`` or the predictions.
    """
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if n_classes == 2:
        p1 = proba.reshape(-1)
        y_pred = (p1 >= 0.5).astype(np.int64)
        scores: dict[str, MetricValue] = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
            "roc_auc": _roc_auc(y_true, p1, n_classes),
        }
    else:
        y_pred = proba.argmax(axis=1)
        scores = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "precision": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "roc_auc": _roc_auc(y_true, _rows_sum_to_one(proba), n_classes),
        }
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
    scores["confusion_matrix"] = [[int(v) for v in row] for row in matrix]
    return scores


def _rows_sum_to_one(proba: np.ndarray) -> np.ndarray:
    # scikit-learn refuses multiclass scores whose rows do not sum to 1 within 1e-5, which
    # float32 softmax over many classes can miss. Rescale only then: rescaling every time
    # splits ties between equal scores by rounding and shifts the AUC.
    if np.allclose(proba.sum(axis=1), 1.0):
        return proba
    scaled: np.ndarray = proba / proba.sum(axis=1, keepdims=True)
    return scaled


def _roc_auc(y_true: np.ndarray, score: np.ndarray, n_classes: int) -> float | None:
    # ROC AUC needs every class in y_true (one-vs-rest for multiclass); a fold
    # missing one has no defined value, which is reported as None, not 0 or 0.5.
    if len(np.unique(y_true)) < n_classes:
        return None
    if n_classes == 2:
        value = roc_auc_score(y_true, score)
    else:
        value = roc_auc_score(y_true, score, multi_class="ovr", labels=list(range(n_classes)))
    return float(value)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    mse = float(mean_squared_error(y_true, y_pred))
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def summarize(folds: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Mean and population std of every scalar metric across folds.

    A metric that is None in some folds (roc_auc on a fold missing a class) is summarised
    over the folds that have it; non-scalars such as the confusion matrix are skipped.
    """
    values: dict[str, list[float]] = {}
    for fold in folds:
        for name, value in fold.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.setdefault(name, []).append(float(value))
    return {
        name: {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
        for name, vals in values.items()
    }
