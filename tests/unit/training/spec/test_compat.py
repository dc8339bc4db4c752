"""training/spec/compat.py: whether a valid spec can train on a dataset, checked the same
way at the API's door and in the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.vocabulary import DataKind
from training.errors import SpecDataMismatch
from training.spec import DataInfo, ModelSpec, check_against_data, infer_shapes, input_shape


def _spec(layers: list[dict[str, Any]], **extra: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"task": "regression", "loss": "mse", "layers": [*layers, {"type": "Dense", "units": 1}]}
        | extra
    )


def test_a_window_makes_the_input_steps_by_every_column() -> None:
    spec = _spec([{"type": "GRU", "units": 2}], window={"steps": 7, "horizon": 3})
    info = DataInfo(DataKind.TABLE, n_rows=100, item_shape=(4,), n_columns=5)
    assert input_shape(spec, info) == (7, 5)
    check_against_data(spec, info)


def test_embedding_needs_integer_features() -> None:
    spec = _spec([{"type": "Embedding", "input_dim": 5, "output_dim": 2}, {"type": "Flatten"}])
    check_against_data(
        spec,
        DataInfo(DataKind.TABLE, n_rows=9, item_shape=(3,), n_columns=4, integer_features=True),
    )
    with pytest.raises(SpecDataMismatch, match="Embedding looks up integer codes"):
        check_against_data(spec, DataInfo(DataKind.TABLE, n_rows=9, item_shape=(3,), n_columns=4))


EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


def test_example_specs_fit_the_data_they_are_written_for() -> None:
    cnn = ModelSpec.model_validate_json((EXAMPLES / "digits-cnn.json").read_text())
    digits = DataInfo(
        DataKind.IMAGE, 1797, (8, 8, 1), class_counts={str(d): 179 for d in range(10)}
    )
    check_against_data(cnn, digits)
    assert infer_shapes(cnn.layers, (8, 8, 1))[-1] == (10,)

    lstm = ModelSpec.model_validate_json((EXAMPLES / "sensor-lstm.json").read_text())
    series = DataInfo(DataKind.TABLE, n_rows=500, item_shape=(3,), n_columns=4)
    check_against_data(lstm, series)
    assert input_shape(lstm, series) == (24, 4)


CANCER_MULTICLASS = {
    "task": "multiclass",
    "loss": "sparse_categorical_crossentropy",
    "layers": [{"type": "Dense", "units": 3, "activation": "softmax"}],
}
MISFITS = [
    CANCER_MULTICLASS,
    {
        **CANCER_MULTICLASS,
        "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}],
        "test_split": 0.001,
    },
    {
        **CANCER_MULTICLASS,
        "layers": [{"type": "Dense", "units": 2, "activation": "softmax"}],
        "class_weight": {"0": 1.0},
    },
    {
        **CANCER_MULTICLASS,
        "layers": [
            {"type": "Conv2D", "filters": 2, "kernel_size": 3},
            {"type": "Flatten"},
            {"type": "Dense", "units": 2, "activation": "softmax"},
        ],
    },
    {
        **CANCER_MULTICLASS,
        "layers": [
            {"type": "Embedding", "input_dim": 4, "output_dim": 2},
            {"type": "Flatten"},
            {"type": "Dense", "units": 2, "activation": "softmax"},
        ],
    },
]


@pytest.mark.parametrize("fields", MISFITS)
def test_the_door_and_the_worker_refuse_a_misfit_with_the_same_words(
    fields: dict[str, Any],
) -> None:
    # The API checks what the registry stored of the upload; the worker checks the arrays
    # it loaded from the same bytes. One function, one message.
    from sklearn.datasets import load_breast_cancer

    from training.data import load_table
    from training.inspect import inspect_csv

    csv = load_breast_cancer(as_frame=True).frame.to_csv(index=False).encode()
    summary = inspect_csv(csv, target="target")
    stored = DataInfo.of_dataset(
        kind=summary.kind,
        n_rows=summary.n_rows,
        shape=summary.shape,
        columns=summary.columns,
        target="target",
        class_counts=summary.class_counts,
    )
    loaded = load_table(csv, target="target", task="multiclass").info()
    spec = ModelSpec.model_validate(fields)

    with pytest.raises(SpecDataMismatch) as at_door:
        check_against_data(spec, stored)
    with pytest.raises(SpecDataMismatch) as in_worker:
        check_against_data(spec, loaded)
    assert str(at_door.value) == str(in_worker.value)


def test_a_series_too_short_to_fold_in_time_order_is_refused_with_the_count() -> None:
    spec = _spec([{"type": "GRU", "units": 2}], window={"steps": 10, "horizon": 1}, k_folds=3)
    # 36 windows: 3 folds of 9, and 9 before them, of which 10 must be left out.
    short = DataInfo(DataKind.TABLE, n_rows=46, item_shape=(4,), n_columns=5)
    with pytest.raises(SpecDataMismatch, match=r"leaves 36 windows .* needs at least \d+ windows"):
        check_against_data(spec, short)
    check_against_data(spec, DataInfo(DataKind.TABLE, n_rows=80, item_shape=(4,), n_columns=5))


GATE = {
    "task": "binary",
    "loss": "binary_crossentropy",
    "layers": [
        {"type": "Dense", "units": 4, "activation": "tanh"},
        {"type": "Dense", "units": 1, "activation": "sigmoid"},
    ],
}


@pytest.mark.parametrize(
    ("counts", "advice"),
    [
        # AND: one row of class 1, so no k can stratify it.
        ({"0": 3, "1": 1}, 'add rows, or set "cross_validation": false'),
        # XOR: two rows a class; k=2 folds, k=5 does not.
        ({"0": 2, "1": 2}, 'lower k_folds to 2 or less, add rows, or set "cross_validation"'),
    ],
)
def test_data_too_small_to_fold_is_pointed_at_no_cross_validation(
    counts: dict[str, int], advice: str
) -> None:
    info = DataInfo(DataKind.TABLE, n_rows=4, item_shape=(2,), class_counts=counts, n_columns=3)
    with pytest.raises(SpecDataMismatch) as refused:
        check_against_data(ModelSpec.model_validate(GATE), info)
    assert "k_folds=5 is larger than the smallest class" in str(refused.value)
    assert advice in str(refused.value)
    # What the advice says is accepted.
    check_against_data(ModelSpec.model_validate(GATE | {"cross_validation": False}), info)


def test_regression_rows_fewer_than_folds_are_refused_at_the_door() -> None:
    info = DataInfo(DataKind.TABLE, n_rows=3, item_shape=(2,), n_columns=3)
    with pytest.raises(SpecDataMismatch, match=r"k_folds=5 needs at least 5 rows .* has 3"):
        check_against_data(_spec([]), info)
    check_against_data(_spec([], cross_validation=False), info)


def test_a_short_series_trains_without_cross_validation() -> None:
    info = DataInfo(DataKind.TABLE, n_rows=12, item_shape=(1,), n_columns=2)
    spec = _spec([{"type": "GRU", "units": 2}], window={"steps": 4, "horizon": 1})
    with pytest.raises(SpecDataMismatch, match='set "cross_validation": false'):
        check_against_data(spec, info)
    check_against_data(spec.model_copy(update={"cross_validation": False}), info)
    assert spec.n_folds == 5
    assert spec.model_copy(update={"cross_validation": False}).n_folds == 0
