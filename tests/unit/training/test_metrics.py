import math

import numpy as np
import pytest
from sklearn import metrics as skm

from training.metrics import classification_metrics, regression_metrics, summarize


def test_binary_metrics_match_hand_counts_and_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2])
    pred = np.array([0, 1, 1, 0, 1, 0])

    got = classification_metrics(y, p, n_classes=2)

    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["roc_auc"] == pytest.approx(8 / 9)
    assert got["confusion_matrix"] == [[2, 1], [1, 2]]
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))


def test_binary_accepts_a_column_of_probabilities() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([0.3, 0.7, 0.2, 0.9])

    assert classification_metrics(y, p[:, None], n_classes=2) == classification_metrics(
        y, p, n_classes=2
    )


def test_roc_auc_is_none_when_the_fold_has_one_class() -> None:
    got = classification_metrics(np.array([1, 1, 1]), np.array([0.9, 0.2, 0.7]), n_classes=2)

    assert got["roc_auc"] is None
    assert got["confusion_matrix"] == [[0, 0], [1, 2]]
    assert got["recall"] == pytest.approx(2 / 3)


def test_multiclass_with_a_class_missing_from_the_fold() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.2, 0.7, 0.1],
            [0.1, 0.8, 0.1],
            [0.1, 0.2, 0.7],
        ]
    )
    pred = np.array([0, 1, 1, 2])

    got = classification_metrics(y, proba, n_classes=3)

    assert got["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 0]]
    assert got["accuracy"] == pytest.approx(0.5)
    assert got["precision"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0)
    )
    assert got["precision"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert got["recall"] == pytest.approx(
        skm.recall_score(y, pred, average="macro", zero_division=0)
    )
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert got["roc_auc"] is None


def test_multiclass_roc_auc_is_one_vs_rest() -> None:
    y = np.array([0, 1, 2, 2, 1, 0])
    proba = np.array(
        [
            [0.6, 0.3, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.2, 0.7],
            [0.3, 0.4, 0.3],
            [0.5, 0.4, 0.1],
            [0.4, 0.4, 0.2],
        ],
        dtype=np.float32,
    )

    got = classification_metrics(y, proba, n_classes=3)

    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    matrix = got["confusion_matrix"]
    assert isinstance(matrix, list)
    assert sum(map(sum, matrix)) == 6
    assert all(type(v) is int for row in matrix for v in row)


def test_regression_metrics() -> None:
    y = np.array([3.0, -0.5, 2.0, 7.0])
    pred = np.array([[2.5], [0.0], [2.0], [8.0]], dtype=np.float32)

    got = regression_metrics(y, pred)

    assert got["mse"] == pytest.approx(0.375)
    assert got["rmse"] == pytest.approx(math.sqrt(0.375))
    assert got["mae"] == pytest.approx(0.5)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred.ravel()))
    assert set(got) == {"mse", "rmse", "mae", "r2"}


def test_summarize_takes_mean_and_population_std_of_scalars_only() -> None:
    folds: list[dict[str, object]] = [
        {"accuracy": 1.0, "roc_auc": None, "confusion_matrix": [[1, 0], [0, 1]]},
        {"accuracy": 3.0, "roc_auc": 0.5, "confusion_matrix": [[0, 1], [1, 0]]},
        {"accuracy": 2.0, "roc_auc": 0.7, "confusion_matrix": [[1, 1], [0, 0]]},
    ]

    got = summarize(folds)

    assert set(got) == {"accuracy", "roc_auc"}
    assert got["accuracy"]["mean"] == pytest.approx(2.0)
    assert got["accuracy"]["std"] == pytest.approx(np.std([1.0, 3.0, 2.0]))
    assert got["roc_auc"]["mean"] == pytest.approx(0.6)
    assert got["roc_auc"]["std"] == pytest.approx(0.1)


def _fixed_binary() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=200)
    # Informative but imperfect scores, some at exactly 0 and 1 (log loss must clip them).
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, size=200), 0, 1)
    p[:3] = [0.0, 1.0, 0.5]
    return y, p.astype(np.float32)


def test_every_binary_metric_matches_scikit_learn() -> None:
    y, p = _fixed_binary()
    pred = (p >= 0.5).astype(int)

    got = classification_metrics(y, p, n_classes=2)

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["error_rate"] == pytest.approx(1 - skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred))
    # Specificity is the recall of the negative class, NPV its precision.
    assert got["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert got["npv"] == pytest.approx(skm.precision_score(y, pred, pos_label=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p.astype(np.float64)))
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert 0 < got["specificity"] < 1  # type: ignore[operator]
    assert got["specificity"] != got["recall"]


def test_every_multiclass_metric_matches_scikit_learn_with_macro_specificity() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, size=300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[y]
    proba = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    pred = proba.argmax(axis=1)

    got = classification_metrics(y, proba, n_classes=4)

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["error_rate"] == pytest.approx(1 - skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    # Macro specificity / NPV: each class against the rest, scored by scikit-learn as the
    # recall / precision of "not this class", then the unweighted mean.
    spec = [skm.recall_score(y != c, pred != c) for c in range(4)]
    npv = [skm.precision_score(y != c, pred != c) for c in range(4)]
    assert got["specificity"] == pytest.approx(np.mean(spec))
    assert got["npv"] == pytest.approx(np.mean(npv))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    p64 = proba.astype(np.float64)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p64 / p64.sum(axis=1, keepdims=True)))
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=100)
    pred = y + rng.normal(scale=0.4, size=100)

    got = regression_metrics(y, pred)

    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, pred))
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred))


def test_summary_has_mean_and_std_of_every_new_metric() -> None:
    y, p = _fixed_binary()
    folds = [classification_metrics(y[i::3], p[i::3], n_classes=2) for i in range(3)]

    got = summarize(folds)

    for name in ("error_rate", "specificity", "npv", "f1_macro", "f1_weighted", "log_loss"):
        values = [f[name] for f in folds]
        assert got[name]["mean"] == pytest.approx(np.mean(values))
        assert got[name]["std"] == pytest.approx(np.std(values))
