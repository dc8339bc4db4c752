"""A version's evaluation report: what a reviewer reads before promoting it.

One section per set of scored rows: each fold's model on its validation rows, the
exported model on the rows `test_split` held out, or (without cross-validation) the
exported model on the rows it trained on, marked as such. Every number is scikit-learn's
on those rows' targets and outputs; the shapes serialise to JSON (an infinite curve
threshold, scikit-learn's "above every score", is None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_curve,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from core.vocabulary import BINARY_THRESHOLD, Task
from training.metrics import classification_metrics, regression_metrics
from training.spec import ModelSpec

# The threshold table's rows: P(positive) from 0 to 1 in steps of 0.05.
THRESHOLDS = [round(0.05 * i, 2) for i in range(21)]
CALIBRATION_BINS = 10
# Predicted-against-actual points in a regression section: every row up to this many,
# then an evenly spaced sample of them (the metrics and deciles still use every row).
MAX_POINTS = 2000
RESIDUAL_BINS = 20


@dataclass(frozen=True)
class Scored:
    """Rows one model was scored on: "fold" (its validation rows), "test" (held out of
    the whole run) or "training" (the rows the exported model trained on)."""

    source: str
    y_true: np.ndarray
    output: np.ndarray
    fold: int | None = None


def evaluation_report(
    spec: ModelSpec, scored: Sequence[Scored], *, class_labels: Sequence[Any] | None
) -> dict[str, Any]:
    classify = spec.task != Task.REGRESSION
    labels = (
        [str(label) for label in class_labels]
        if class_labels is not None
        else [str(i) for i in range(spec.n_classes)]
        if classify
        else None
    )
    sections = [
        {
            "source": s.source,
            "fold": s.fold,
            "n_rows": len(s.y_true),
            **(
                _classification(s.y_true, s.output, n_classes=spec.n_classes)
                if classify
                else _regression(s.y_true, s.output)
            ),
        }
        for s in scored
    ]
    return {
        "task": spec.task.value,
        "class_labels": labels,
        # Binary: the P(positive) at or above which a row is labelled positive, in these
        # metrics and by the predictor alike.
        "threshold": BINARY_THRESHOLD if spec.task == Task.BINARY else None,
        "sections": sections,
    }


def _classification(y_true: np.ndarray, output: np.ndarray, *, n_classes: int) -> dict[str, Any]:
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    proba = np.asarray(output, dtype=np.float64)
    binary = n_classes == 2
    if binary:
        p1 = proba.reshape(-1)
        y_pred = (p1 >= BINARY_THRESHOLD).astype(np.int64)
        # One positive class (class 1), as the metrics count it.
        one_vs_rest = [(1, y == 1, p1)]
    else:
        y_pred = proba.argmax(axis=1)
        one_vs_rest = [(c, y == c, proba[:, c]) for c in range(n_classes)]
    precision, recall, f1, support = precision_recall_fscore_support(
        y, y_pred, labels=list(range(n_classes)), zero_division=0
    )
    return {
        "metrics": _finite(classification_metrics(y, proba, n_classes=n_classes)),
        "curves": [_curves(c, positive, score) for c, positive, score in one_vs_rest],
        "brier": float(
            brier_score_loss(y, p1)
            if binary
            else brier_score_loss(
                y, proba / proba.sum(axis=1, keepdims=True), labels=list(range(n_classes))
            )
        ),
        "per_class": [
            {
                "class": c,
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c in range(n_classes)
        ],
        "confusion_matrix": _ints(confusion_matrix(y, y_pred, labels=list(range(n_classes)))),
        "threshold_table": _threshold_table(y, p1) if binary else None,
    }


def _curves(c: int, positive: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """ROC, precision-recall and reliability curves of class ``c`` against the rest;
    None where scikit-learn leaves them undefined (rows of one kind only)."""
    result: dict[str, Any] = {"class": c, "roc": None, "pr": None, "calibration": None}
    if positive.all() or not positive.any():
        return result
    fpr, tpr, roc_thresholds = roc_curve(positive, score)
    result["roc"] = {
        "fpr": _floats(fpr),
        "tpr": _floats(tpr),
        "thresholds": _floats(roc_thresholds),
        "auc": float(roc_auc_score(positive, score)),
    }
    precision, recall, pr_thresholds = precision_recall_curve(positive, score)
    result["pr"] = {
        "precision": _floats(precision),
        "recall": _floats(recall),
        "thresholds": _floats(pr_thresholds),
        "average_precision": float(average_precision_score(positive, score)),
    }
    prob_true, prob_pred = calibration_curve(positive, score, n_bins=CALIBRATION_BINS)
    result["calibration"] = {
        "n_bins": CALIBRATION_BINS,
        "mean_predicted": _floats(prob_pred),
        "fraction_positive": _floats(prob_true),
        "brier": float(brier_score_loss(positive, score)),
    }
    return result


def _threshold_table(y: np.ndarray, p1: np.ndarray) -> list[dict[str, float]]:
    rows = []
    for t in THRESHOLDS:
        y_pred = (p1 >= t).astype(np.int64)
        tn, fp, _, _ = confusion_matrix(y, y_pred, labels=[0, 1]).ravel()
        rows.append(
            {
                "threshold": t,
                "precision": float(precision_score(y, y_pred, zero_division=0)),
                "recall": float(recall_score(y, y_pred, zero_division=0)),
                "f1": float(f1_score(y, y_pred, zero_division=0)),
                # scikit-learn has no specificity: the negatives' recall, from its matrix.
                "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
            }
        )
    return rows


def _regression(y_true: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    pred = np.asarray(output, dtype=np.float64).reshape(-1)
    residual = y - pred
    counts, edges = np.histogram(residual, bins=RESIDUAL_BINS)
    shown = np.linspace(0, len(y) - 1, min(len(y), MAX_POINTS)).round().astype(np.int64)
    return {
        "metrics": _finite(regression_metrics(y, pred)),
        "points": {
            "actual": _floats(y[shown]),
            "predicted": _floats(pred[shown]),
            "sampled": len(shown) < len(y),
        },
        "residuals": {
            "mean": float(residual.mean()),
            "std": float(residual.std()),
            "histogram": {"edges": _floats(edges), "counts": _ints(counts)},
        },
        "deciles": _deciles(y, pred),
    }


def _deciles(y: np.ndarray, pred: np.ndarray) -> list[dict[str, float | int]]:
    """Errors of the rows in each tenth of the actual values, lowest first."""
    edges = np.quantile(y, np.linspace(0, 1, 11))
    # Decile d holds edges[d] <= y < edges[d + 1]; the last one includes its top edge.
    which = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, 9)
    rows: list[dict[str, float | int]] = []
    for d in range(10):
        rows_in = which == d
        if not rows_in.any():
            continue
        mse = float(mean_squared_error(y[rows_in], pred[rows_in]))
        rows.append(
            {
                "decile": d + 1,
                "low": float(edges[d]),
                "high": float(edges[d + 1]),
                "n": int(rows_in.sum()),
                "mae": float(mean_absolute_error(y[rows_in], pred[rows_in])),
                "rmse": math.sqrt(mse),
                "bias": float((pred[rows_in] - y[rows_in]).mean()),
            }
        )
    return rows


def _finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    # A metric scikit-learn leaves undefined as NaN (R² of one row, say) is None here.
    return {
        name: None if isinstance(value, float) and not math.isfinite(value) else value
        for name, value in metrics.items()
    }


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def _ints(values: np.ndarray) -> Any:
    return np.asarray(values, dtype=np.int64).tolist()
