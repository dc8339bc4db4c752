"""training/report.py: every number of a report is scikit-learn's on the same rows."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
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

from tests.factories import BINARY_MLP, mlp, model_spec
from training.metrics import classification_metrics, regression_metrics
from training.report import THRESHOLDS, Scored, evaluation_report
from training.spec import ModelSpec

RNG = np.random.default_rng(7)


def _same(reported: list[float | None], expected: np.ndarray) -> None:
    # The report writes scikit-learn's infinite threshold ("above every score") as None.
    assert [math.inf if v is None else v for v in reported] == pytest.approx(
        list(expected), rel=1e-12, abs=0
    )


def _binary_rows(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    y = RNG.integers(0, 2, n)
    p = np.clip(0.35 * y + RNG.uniform(0, 0.65, n), 0, 1).astype(np.float32)
    return y, p.reshape(-1, 1)


def test_a_binary_section_equals_scikit_learn_on_the_same_predictions() -> None:
    y, output = _binary_rows()
    p = output.reshape(-1).astype(np.float64)

    report = evaluation_report(
        model_spec(BINARY_MLP), [Scored("test", y, output)], class_labels=["benign", "malignant"]
    )

    assert report["task"] == "binary"
    assert report["threshold"] == 0.5
    assert report["class_labels"] == ["benign", "malignant"]
    (section,) = report["sections"]
    assert section["source"] == "test"
    assert section["n_rows"] == len(y)
    assert section["metrics"] == classification_metrics(y, output, n_classes=2)
    (curves,) = section["curves"]
    fpr, tpr, roc_t = roc_curve(y, p)
    _same(curves["roc"]["fpr"], fpr)
    _same(curves["roc"]["tpr"], tpr)
    _same(curves["roc"]["thresholds"], roc_t)
    assert curves["roc"]["auc"] == roc_auc_score(y, p)
    precision, recall, pr_t = precision_recall_curve(y, p)
    _same(curves["pr"]["precision"], precision)
    _same(curves["pr"]["recall"], recall)
    _same(curves["pr"]["thresholds"], pr_t)
    assert curves["pr"]["average_precision"] == average_precision_score(y, p)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
    _same(curves["calibration"]["fraction_positive"], prob_true)
    _same(curves["calibration"]["mean_predicted"], prob_pred)
    assert section["brier"] == curves["calibration"]["brier"] == brier_score_loss(y, p)
    y_pred = (p >= 0.5).astype(int)
    assert section["confusion_matrix"] == confusion_matrix(y, y_pred).tolist()
    prec, rec, f1, support = precision_recall_fscore_support(y, y_pred, zero_division=0)
    assert [c["precision"] for c in section["per_class"]] == list(prec)
    assert [c["recall"] for c in section["per_class"]] == list(rec)
    assert [c["f1"] for c in section["per_class"]] == list(f1)
    assert [c["support"] for c in section["per_class"]] == list(support)
    table = section["threshold_table"]
    assert [row["threshold"] for row in table] == THRESHOLDS
    for row in table:
        at = (p >= row["threshold"]).astype(int)
        tn, fp, _, _ = confusion_matrix(y, at, labels=[0, 1]).ravel()
        assert row["precision"] == precision_score(y, at, zero_division=0)
        assert row["recall"] == recall_score(y, at, zero_division=0)
        assert row["f1"] == f1_score(y, at, zero_division=0)
        assert row["specificity"] == tn / (tn + fp)
    # The served threshold's row is the section's metrics.
    at_half = next(row for row in table if row["threshold"] == 0.5)
    assert at_half["f1"] == section["metrics"]["f1"]
    assert at_half["specificity"] == section["metrics"]["specificity"]
    json.dumps(report, allow_nan=False)


def test_a_multiclass_section_has_one_curve_per_class_against_the_rest() -> None:
    y = RNG.integers(0, 3, 240)
    logits = RNG.normal(size=(240, 3)) + 1.5 * np.eye(3)[y]
    proba = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    spec = model_spec(mlp(8, task="multiclass", classes=3))

    report = evaluation_report(spec, [Scored("fold", y, proba, fold=1)], class_labels=None)

    (section,) = report["sections"]
    assert report["class_labels"] == ["0", "1", "2"]
    assert report["threshold"] is None
    assert section["fold"] == 1
    assert section["threshold_table"] is None
    assert [c["class"] for c in section["curves"]] == [0, 1, 2]
    for c, curves in enumerate(section["curves"]):
        scores = proba[:, c].astype(np.float64)
        assert curves["roc"]["auc"] == roc_auc_score(y == c, scores)
        assert curves["pr"]["average_precision"] == average_precision_score(y == c, scores)
        assert curves["calibration"]["brier"] == brier_score_loss(y == c, scores)
    as_float64 = proba.astype(np.float64)
    normalised = as_float64 / as_float64.sum(axis=1, keepdims=True)
    assert section["brier"] == brier_score_loss(y, normalised, labels=[0, 1, 2])
    assert section["confusion_matrix"] == confusion_matrix(y, proba.argmax(axis=1)).tolist()


def test_a_class_missing_from_the_rows_has_no_curves_rather_than_made_up_ones() -> None:
    y = np.zeros(20, dtype=int)
    report = evaluation_report(
        model_spec(BINARY_MLP), [Scored("test", y, RNG.uniform(size=(20, 1)))], class_labels=None
    )

    (curves,) = report["sections"][0]["curves"]
    assert curves == {"class": 1, "roc": None, "pr": None, "calibration": None}
    assert report["sections"][0]["metrics"]["roc_auc"] is None
    json.dumps(report, allow_nan=False)


def test_a_regression_section_has_residuals_points_and_errors_by_decile() -> None:
    y = RNG.normal(100, 20, 3000)
    pred = y + RNG.normal(0, 5, 3000) + 0.1 * (y - 100)
    spec: ModelSpec = model_spec(mlp(8, task="regression"))

    report = evaluation_report(
        spec, [Scored("training", y, pred.reshape(-1, 1))], class_labels=None
    )

    (section,) = report["sections"]
    assert report["class_labels"] is None
    assert section["source"] == "training"
    assert section["metrics"] == regression_metrics(y, pred)
    points: dict[str, Any] = section["points"]
    assert points["sampled"] is True
    assert len(points["actual"]) == 2000
    assert set(points["actual"]) <= set(y.tolist())
    residual = y - pred
    assert section["residuals"]["mean"] == pytest.approx(residual.mean(), rel=1e-12)
    counts, edges = np.histogram(residual, bins=20)
    assert section["residuals"]["histogram"]["counts"] == counts.tolist()
    deciles = section["deciles"]
    assert [d["decile"] for d in deciles] == list(range(1, 11))
    assert sum(d["n"] for d in deciles) == 3000
    for d in deciles:
        rows = (y >= d["low"]) & ((y < d["high"]) if d["decile"] < 10 else (y <= d["high"]))
        assert d["n"] == rows.sum()
        assert d["mae"] == mean_absolute_error(y[rows], pred[rows])
        assert d["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y[rows], pred[rows])))
    # The model overshoots high values and undershoots low ones: the bias says so.
    assert deciles[0]["bias"] < 0 < deciles[-1]["bias"]
