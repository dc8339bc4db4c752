"""training/stacked.py: a job's folds trained together as one graph give each fold what
it would get alone, and specs it does not cover train fold by fold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from tests.factories import BINARY_MLP, mlp, model_spec
from training import cv
from training.cv import run_kfold
from training.data import Table
from training.errors import Cancelled, NonFiniteLoss
from training.fit import FitPlan
from training.hooks import FoldResult, Hooks
from training.spec import ModelSpec
from training.stacked import why_not


def _both(spec: ModelSpec, X: np.ndarray, y: np.ndarray) -> tuple[list[FoldResult], ...]:
    apart = run_kfold(FitPlan(spec), X, y, together=False)
    together = run_kfold(FitPlan(spec), X, y, together=True)
    return apart, together


def _same_fits(apart: list[FoldResult], together: list[FoldResult]) -> None:
    assert [(f.fold, f.n_train, f.n_val) for f in together] == [
        (f.fold, f.n_train, f.n_val) for f in apart
    ]
    for alone, stacked in zip(apart, together, strict=True):
        assert stacked.output is not None
        np.testing.assert_allclose(stacked.output, alone.output, atol=2e-6)
        assert set(stacked.history) == set(alone.history)
        for key, values in alone.history.items():
            np.testing.assert_allclose(stacked.history[key], values, rtol=2e-5, err_msg=key)
        scalars = {k for k, v in alone.metrics.items() if isinstance(v, float)}
        assert {k: stacked.metrics[k] for k in scalars} == pytest.approx(
            {k: alone.metrics[k] for k in scalars}, abs=1e-5
        )
        assert stacked.metrics.get("confusion_matrix") == alone.metrics.get("confusion_matrix")


# One epoch: the rows come in the same order as a fold trained alone (later epochs draw
# other orders, as two seeded shuffles do), so any mixing of the folds' weights, gradients
# or optimizer state would show as a difference here.
@pytest.mark.parametrize(
    "overrides",
    [{}, {"class_weight": "balanced"}, {"optimizer": {"name": "sgd", "momentum": 0.9}}],
    ids=["adam", "class-weights", "sgd-momentum"],
)
def test_each_fold_is_what_it_would_be_alone(cancer: Table, overrides: dict[str, Any]) -> None:
    # 500 rows in 5 folds: 400 training rows each, so no fold needs padding.
    spec = model_spec(mlp(12, 8), epochs=1, batch_size=16, k_folds=5, seed=3, **overrides)

    _same_fits(*_both(spec, cancer.X[:500], cancer.y[:500]))


def test_multiclass_and_regression_folds_are_what_they_would_be_alone() -> None:
    X, y = load_iris(return_X_y=True)
    iris = model_spec(mlp(8, task="multiclass", classes=3), epochs=1, k_folds=3, batch_size=8)
    _same_fits(*_both(iris, X, y))
    onehot = model_spec(iris.model_dump(), loss="categorical_crossentropy")
    _same_fits(*_both(onehot, X, y))
    X, y = load_diabetes(return_X_y=True)
    regression = model_spec(mlp(16, task="regression"), epochs=1, k_folds=4, batch_size=16)
    _same_fits(*_both(regression, X[:400], y[:400]))


def test_folds_of_unequal_size_train_as_well_together(cancer: Table) -> None:
    # 569 rows: folds of 455 and 456 training rows, the shorter ones padded.
    spec = model_spec(BINARY_MLP, epochs=15, k_folds=5)
    epochs: list[tuple[Any, ...]] = []
    folds: list[FoldResult] = []
    hooks = Hooks(on_epoch=lambda *a: epochs.append(a), on_fold=folds.append)
    apart = run_kfold(FitPlan(spec), cancer.X, cancer.y, together=False)

    together = run_kfold(FitPlan(spec, hooks), cancer.X, cancer.y, together=True)

    assert {f.n_train for f in together} == {455, 456}
    assert sum(f.n_val for f in together) == 569
    assert folds == together
    # Every fold's every epoch is reported, with the curves a fit alone reports.
    assert sorted((e[1], e[2]) for e in epochs) == [
        (f, e) for f in range(1, 6) for e in range(1, 16)
    ]
    assert all(e[0] == "cv" for e in epochs)
    assert all(set(f.history) == {"loss", "accuracy", "val_loss", "val_accuracy"} for f in together)
    mean_f1 = [np.mean([f.metrics["f1"] for f in run]) for run in (apart, together)]
    assert abs(mean_f1[0] - mean_f1[1]) < 0.02
    assert all(f.history["loss"][-1] < f.history["loss"][0] for f in together)


def test_cancel_stops_the_folds_trained_together(cancer: Table) -> None:
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) >= 3

    folds: list[FoldResult] = []
    with pytest.raises(Cancelled, match="cancelled during k-fold") as info:
        run_kfold(
            FitPlan(
                model_spec(BINARY_MLP, epochs=50),
                Hooks(should_stop=should_stop, on_fold=folds.append),
            ),
            cancer.X,
            cancer.y,
        )

    assert info.value.code == "cancelled"
    assert len(polls) == 3  # once an epoch here: an epoch is one call of the graph
    assert folds == []


def test_a_diverging_fold_is_refused_by_name() -> None:
    X, y = load_diabetes(return_X_y=True)
    spec = model_spec(
        mlp(32, task="regression", loss="mse"),
        optimizer={"name": "sgd", "learning_rate": 10.0},
        epochs=3,
        k_folds=2,
    )

    with pytest.raises(NonFiniteLoss, match=r"fold 1, epoch 1: .*learning_rate \(now 10\)"):
        run_kfold(FitPlan(spec), X[:100], y[:100])


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"early_stopping": {"patience": 2, "monitor": "loss"}}, "early stopping"),
        ({"validation_split": 0.2}, "validation_split"),
        (
            {"layers": [{"type": "BatchNormalization"}, *BINARY_MLP["layers"]]},
            "BatchNormalization",
        ),
        (
            {
                "layers": [
                    {"type": "Dense", "units": 4, "kernel_regularizer": {"l2": 0.01}},
                    {"type": "Dense", "units": 1, "activation": "sigmoid"},
                ]
            },
            "regularizer",
        ),
    ],
)
def test_what_cannot_train_together_trains_fold_by_fold(
    cancer: Table, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], why: str
) -> None:
    spec = model_spec(BINARY_MLP, epochs=2, k_folds=2, **changes)
    assert why in (why_not(spec, n_rows=569, item_shape=(30,)) or "")

    def refuse(*_: object) -> None:
        raise AssertionError("trained together")

    monkeypatch.setattr(cv, "run_stacked", refuse)

    folds = run_kfold(FitPlan(spec), cancer.X[:200], cancer.y[:200])

    assert [f.fold for f in folds] == [1, 2]


def test_images_and_tables_too_large_to_copy_k_times_train_fold_by_fold() -> None:
    spec = model_spec(BINARY_MLP, k_folds=5)
    assert why_not(spec, n_rows=1000, item_shape=(30,)) is None
    assert "too many" in (why_not(spec, n_rows=1_000_000, item_shape=(30,)) or "")
    assert "for tables" in (why_not(spec, n_rows=1000, item_shape=(8, 8, 1)) or "")
