"""Fold metrics, all computed by scikit-learn, in shapes that serialise to JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    multilabel_confusion_matrix,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from core.vocabulary import BINARY_THRESHOLD

MetricValue = float | None | list[list[int]]


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, *, n_classes: int
) -> dict[str, MetricValue]:
    """Score class probabilities against class indices 0..n_classes-1.

    Binary: ``proba`` is P(class 1), shape [n] or [n, 1], class 1 at or above
    BINARY_THRESHOLD, as the predictor labels it; precision,
    recall (sensitivity), f1, specificity and negative predictive value are those of
    class 1 as the positive class. Multiclass: ``proba`` is [n, C]; precision, recall,
    f1, specificity and npv are macro averages (one class against the rest, then the
    unweighted mean) over the classes present in ``y_true`` or the predictions.
    ``f1_macro`` and ``f1_weighted`` are given for both. A ratio whose denominator is
    zero (no predicted positives, say) is 0, as scikit-learn's ``zero_division=0``.
    """
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(n_classes))
    if n_classes == 2:
        p1 = proba.reshape(-1)
        y_pred = (p1 >= BINARY_THRESHOLD).astype(np.int64)
        average = "binary"
        score: np.ndarray = p1
        probabilities = p1
    else:
        y_pred = proba.argmax(axis=1)
        average = "macro"
        score = _rows_sum_to_one(proba)
        # log_loss checks the row sums more tightly than float32 softmax outputs meet.
        probabilities = proba / proba.sum(axis=1, keepdims=True)
    specificity, npv = _specificity_npv(y_true, y_pred, binary=n_classes == 2)
    accuracy = float(accuracy_score(y_true, y_pred))
    scores: dict[str, MetricValue] = {
        "accuracy": accuracy,
        "error_rate": 1.0 - accuracy,
        "precision": float(precision_score(y_true, y_pred, average=average, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, average=average, zero_division=0)),
        "specificity": specificity,
        "npv": npv,
        "f1": float(f1_score(y_true, y_pred, average=average, zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "roc_auc": _roc_auc(y_true, score, n_classes),
        "log_loss": float(log_loss(y_true, probabilities, labels=labels)),
    }
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    scores["confusion_matrix"] = [[int(v) for v in row] for row in matrix]
    return scores


def _specificity_npv(
    y_true: np.ndarray, y_pred: np.ndarray, *, binary: bool
) -> tuple[float, float]:
    # scikit-learn has no specificity or NPV: they come from its per-class (one against
    # the rest) confusion matrices. Binary: class 1 is the positive class.
    labels = [1] if binary else np.union1d(y_true, y_pred).tolist()
    per_class = multilabel_confusion_matrix(y_true, y_pred, labels=labels)
    tn, fp, fn = per_class[:, 0, 0], per_class[:, 0, 1], per_class[:, 1, 0]
    specificity = [t / (t + f) if t + f else 0.0 for t, f in zip(tn, fp, strict=True)]
    npv = [t / (t + f) if t + f else 0.0 for t, f in zip(tn, fn, strict=True)]
    return float(np.mean(specificity)), float(np.mean(npv))


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
