"""services/api/gates.py on held-out rows: two versions that were not cross-validated on
the same folds but held out the same test rows are compared row by row, by a paired
bootstrap whose point figures are scikit-learn's on those rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.vocabulary import Task
from registry import predictions
from registry.artifacts import LocalArtifactStore
from registry.models import Dataset, ModelVersion
from services.api.alias_schemas import PromotionGate
from services.api.errors import GateMetricUnknown, GateRefused, NotComparable
from services.api.gates import ROWS_TEST, check
from training.metrics import classification_metrics, regression_metrics
from training.spec.search import METRICS

RNG = np.random.default_rng(11)
ROWS = RNG.permutation(1000)[:300]


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path)


def _version(
    store: LocalArtifactStore,
    number: int,
    y: np.ndarray,
    output: np.ndarray,
    *,
    task: str = "binary",
    rows: np.ndarray = ROWS,
    **spec: Any,
) -> ModelVersion:
    # k_folds differs from version to version: never the same folds, so the rows decide.
    fields = {"task": task, "k_folds": 2 + number, "seed": 0, "test_split": 0.3} | spec
    mv = ModelVersion(
        version=number,
        spec=fields,
        predictions_sha256=store.put(predictions.encode(rows, y, output)),
    )
    mv.dataset = Dataset(sha256="d" * 64)
    return mv


Y = RNG.integers(0, 2, len(ROWS))


def _binary(correct: float) -> np.ndarray:
    """P(class 1) for the rows' targets Y that puts about ``correct`` of them on the right
    side of 0.5."""
    right = RNG.uniform(size=len(ROWS)) < correct
    high, low = RNG.uniform(0.5, 1.0, len(ROWS)), RNG.uniform(0, 0.5, len(ROWS))
    return np.where(right == (Y == 1), high, low).reshape(-1, 1)


# Every metric k-fold stores for a binary model but the ROC AUC, which rows cannot give.
@pytest.mark.parametrize("metric", [m for m in METRICS[Task.BINARY] if m != "roc_auc"])
def test_the_figures_on_the_rows_are_scikit_learns(store: LocalArtifactStore, metric: str) -> None:
    y, weak, strong = Y, _binary(0.7), _binary(0.9)
    current, candidate = _version(store, 1, y, weak), _version(store, 2, y, strong)

    try:
        figures = check(
            PromotionGate(metric=metric, min_delta=-1.0), current, candidate, store=store
        )
    except GateRefused:
        pytest.fail("a margin of -1 passes any candidate")

    assert figures["test"] == ROWS_TEST
    assert figures["rows"] == len(ROWS)
    expect_new = classification_metrics(y, strong, n_classes=2)[metric]
    expect_now = classification_metrics(y, weak, n_classes=2)[metric]
    assert figures["candidate"]["mean"] == pytest.approx(expect_new, rel=1e-6)
    assert figures["current"]["mean"] == pytest.approx(expect_now, rel=1e-6)


def test_multiclass_and_regression_figures_are_scikit_learns(store: LocalArtifactStore) -> None:
    y = RNG.integers(0, 3, len(ROWS))
    proba = RNG.dirichlet([1, 1, 1], len(ROWS)) + 0.8 * np.eye(3)[y]
    proba /= proba.sum(axis=1, keepdims=True)
    other = RNG.dirichlet([1, 1, 1], len(ROWS))
    for metric in ("accuracy", "f1", "precision", "recall", "f1_weighted", "log_loss"):
        figures = check(
            PromotionGate(metric=metric, min_delta=-1.0),
            _version(store, 1, y, other, task="multiclass"),
            _version(store, 2, y, proba, task="multiclass"),
            store=store,
        )
        assert figures["candidate"]["mean"] == pytest.approx(
            classification_metrics(y, proba, n_classes=3)[metric], rel=1e-6
        ), metric
    values = RNG.normal(50, 10, len(ROWS))
    good = values + RNG.normal(0, 2, len(ROWS))
    for metric in ("mae", "mse", "rmse", "r2"):
        figures = check(
            PromotionGate(metric=metric, min_delta=-1e6),
            _version(store, 1, values, values.reshape(-1, 1) * 0 + 50, task="regression"),
            _version(store, 2, values, good.reshape(-1, 1), task="regression"),
            store=store,
        )
        assert figures["candidate"]["mean"] == pytest.approx(
            regression_metrics(values, good)[metric], rel=1e-6
        ), metric


def test_a_better_candidate_passes_and_an_equal_one_does_not(store: LocalArtifactStore) -> None:
    y, weak, strong = Y, _binary(0.75), _binary(0.9)
    current = _version(store, 1, y, weak)

    passed = check(PromotionGate(metric="f1"), current, _version(store, 2, y, strong), store=store)
    assert passed["passed"] is True
    assert passed["p_value"] < 0.01
    assert passed["difference"] > 0.1

    with pytest.raises(GateRefused) as refused:
        check(PromotionGate(metric="f1"), current, _version(store, 3, y, weak), store=store)
    detail = str(refused.value)
    assert "difference +0.0000" in detail
    assert ROWS_TEST in detail
    assert "p = 1" in detail
    # Not worse by more than 0.05: the same model passes a non-inferiority margin.
    margin = PromotionGate(metric="f1", min_delta=-0.05)
    assert check(margin, current, _version(store, 4, y, weak), store=store)["p_value"] < 0.05
    # The same question twice, the same answer (a seeded resampling).
    again = check(PromotionGate(metric="f1"), current, _version(store, 5, y, strong), store=store)
    assert again["p_value"] == passed["p_value"]


def test_other_rows_or_none_are_not_comparable(store: LocalArtifactStore) -> None:
    y, p = Y, _binary(0.8)
    current = _version(store, 1, y, p)
    other_rows = _version(store, 2, y, p, rows=np.sort(ROWS), test_split=0.25)
    with pytest.raises(NotComparable, match=r"held out other rows \(test_split 0.25 vs 0.3"):
        check(PromotionGate(metric="f1"), current, other_rows, store=store)
    no_rows = _version(store, 3, y, p)
    no_rows.predictions_sha256 = None
    with pytest.raises(NotComparable, match="v3 held no test rows out") as info:
        check(PromotionGate(metric="f1"), current, no_rows, store=store)
    assert "neither on the same folds (they differ in k_folds 5 vs 3)" in str(info.value)


def test_a_metric_the_rows_cannot_give_is_named(store: LocalArtifactStore) -> None:
    y, p = Y, _binary(0.8)
    with pytest.raises(GateMetricUnknown, match="no 'roc_auc'; expected one of"):
        check(
            PromotionGate(metric="roc_auc"),
            _version(store, 1, y, p),
            _version(store, 2, y, p),
            store=store,
        )


def test_many_rows_are_resampled_from_a_sample_but_scored_in_full(
    store: LocalArtifactStore,
) -> None:
    n = 30_000
    rows, y = np.arange(n), RNG.integers(0, 2, n)
    weak = np.where(RNG.uniform(size=n) < 0.8, y, 1 - y).reshape(-1, 1) * 0.8 + 0.1
    strong = np.where(RNG.uniform(size=n) < 0.9, y, 1 - y).reshape(-1, 1) * 0.8 + 0.1

    figures = check(
        PromotionGate(metric="accuracy"),
        _version(store, 1, y, weak, rows=rows),
        _version(store, 2, y, strong, rows=rows),
        store=store,
    )

    assert (figures["rows"], figures["resampled_rows"]) == (n, 20_000)
    expected = classification_metrics(y, strong, n_classes=2)["accuracy"]
    assert figures["candidate"]["mean"] == pytest.approx(expected)
    assert figures["p_value"] < 0.001
