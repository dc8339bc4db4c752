"""training/cv.py: k-fold cross-validation one fold after another, the refit, cancelling
and refusing a diverged loss, and when folds go to processes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from tests.factories import BINARY_MLP, model_spec
from training.cv import fit_full, fold_process_count, run_kfold
from training.data import Table
from training.errors import Cancelled, NonFiniteLoss
from training.fit import FitPlan
from training.hooks import FoldResult, Hooks
from training.spec import ModelSpec


def _binary_spec(**overrides: object) -> ModelSpec:
    return model_spec(BINARY_MLP, **overrides)


def _small(cancer: Table, rows: int = 120) -> tuple[np.ndarray, np.ndarray]:
    return cancer.X[:rows], cancer.y[:rows]


def test_runs_repeat_with_the_same_seed(cancer: Table) -> None:
    X, y = _small(cancer)
    spec = _binary_spec(epochs=2, k_folds=2)

    first = run_kfold(FitPlan(spec), X, y)
    second = run_kfold(FitPlan(spec), X, y)

    assert [f.history for f in first] == [f.history for f in second]
    assert [f.metrics for f in first] == [f.metrics for f in second]


def test_should_stop_cancels_at_a_batch_end(cancer: Table) -> None:
    X, y = _small(cancer)
    polls: list[int] = []
    folds: list[FoldResult] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(Cancelled, match="fold 1") as info:
        run_kfold(
            FitPlan(_binary_spec(epochs=5), Hooks(should_stop=should_stop, on_fold=folds.append)),
            X,
            y,
            together=False,  # test_stacked.py cancels folds trained together
        )

    assert info.value.code == "cancelled"
    assert len(polls) == 3
    assert folds == []


def test_should_stop_also_cancels_the_refit(cancer: Table) -> None:
    X, y = _small(cancer)

    with pytest.raises(Cancelled, match="final refit"):
        fit_full(FitPlan(_binary_spec(epochs=5), Hooks(should_stop=lambda: True)), X, y)


def test_diverging_loss_raises_non_finite_loss() -> None:
    X, y = load_diabetes(return_X_y=True)
    spec = ModelSpec.model_validate(
        {
            "task": "regression",
            "layers": [
                {"type": "Dense", "units": 32, "activation": "relu"},
                {"type": "Dense", "units": 1, "activation": "linear"},
            ],
            "loss": "mse",
            "optimizer": {"name": "sgd", "learning_rate": 10.0},
            "epochs": 3,
            "k_folds": 2,
        }
    )
    epochs: list[tuple[Any, ...]] = []

    with pytest.raises(NonFiniteLoss) as info:
        run_kfold(FitPlan(spec, Hooks(on_epoch=lambda *a: epochs.append(a))), X[:100], y[:100])

    message = str(info.value)
    assert "fold 1, epoch 1" in message
    assert "learning_rate (now 10)" in message
    assert info.value.code == "non_finite_loss"
    assert epochs == []


def test_sparse_multiclass_folds_score_every_class() -> None:
    X, y = load_iris(return_X_y=True)
    spec = ModelSpec.model_validate(
        {
            "task": "multiclass",
            "layers": [{"type": "Dense", "units": 3, "activation": "softmax"}],
            "loss": "sparse_categorical_crossentropy",
            "optimizer": {"learning_rate": 0.1},
            "epochs": 3,
            "k_folds": 2,
        }
    )

    folds = run_kfold(FitPlan(spec), X, y)

    assert [f.n_val for f in folds] == [75, 75]
    for fold in folds:
        assert np.array(fold.metrics["confusion_matrix"]).sum(axis=1).tolist() == [25, 25, 25]
        assert isinstance(fold.metrics["roc_auc"], float)
        assert set(fold.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_small_fits_and_one_process_stay_in_this_process() -> None:
    spec = _binary_spec(epochs=1000, batch_size=16, k_folds=5)
    assert fold_process_count(768, spec=spec, processes=16) == 5
    assert fold_process_count(768, spec=spec, processes=2) == 2
    assert fold_process_count(768, spec=spec, processes=1) == 1
    assert fold_process_count(768, spec=_binary_spec(epochs=5, k_folds=5), processes=8) == 1


def _rows(windows: np.ndarray, steps: int, horizon: int) -> set[int]:
    """The series rows some window reads or is labelled with."""
    return {int(r) for i in windows for r in (*range(i, i + steps), i + steps - 1 + horizon)}


@pytest.mark.parametrize(("steps", "horizon", "k"), [(5, 1, 3), (12, 4, 5), (1, 1, 2)])
def test_windows_are_folded_in_time_order_sharing_no_row(steps: int, horizon: int, k: int) -> None:
    from tests.factories import lstm
    from training.cv import fold_splits

    spec = model_spec(lstm(steps=steps, horizon=horizon), k_folds=k)
    n_windows = 200
    splits = fold_splits(np.zeros(n_windows), spec=spec)
    assert len(splits) == k
    for train, val in splits:
        assert train.max() < val.min()  # forward chaining: the past predicts the future
        assert not _rows(train, steps, horizon) & _rows(val, steps, horizon)


def test_held_out_windows_come_last_sharing_no_row() -> None:
    from tests.factories import lstm
    from training.fit import hold_out

    spec = model_spec(lstm(steps=8, horizon=2))
    idx = np.arange(100)
    kept, out, y_kept, y_out = hold_out(idx[:, None], idx, share=0.2, spec=spec)
    assert len(out) == 20
    assert list(y_out) == list(range(80, 100))
    assert not _rows(y_kept, 8, 2) & _rows(y_out, 8, 2)
    assert len(kept) == 100 - 20 - spec.window.gap  # type: ignore[union-attr]
