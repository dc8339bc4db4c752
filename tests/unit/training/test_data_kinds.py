"""Images from NPZ and sequences cut from a time-series CSV, and the shapes at the door."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.data import load_dataset, load_images, load_sequences
from training.errors import DataError
from training.spec import DataInfo, ModelSpec, SpecDataMismatch, infer_shapes


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_images_gain_a_channel_axis_and_encoded_labels() -> None:
    x = np.arange(5 * 3 * 2, dtype=np.uint8).reshape(5, 3, 2)
    table = load_images(npz(x=x, y=np.array(["b", "a", "b", "a", "b"])), task="multiclass")
    assert table.X.shape == (5, 3, 2, 1)
    assert table.X.dtype == np.float32
    assert table.class_labels == ["a", "b"]
    assert table.y.tolist() == [1, 0, 1, 0, 1]
    assert table.kind == "image"
    assert table.feature_names is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not a zip", "not an NPZ"),
        (npz(x=np.zeros((2, 2, 2))), "no array 'y'"),
        (npz(x=np.zeros((2, 2, 2)), y=np.zeros(3)), "x holds 2 images but y holds 3 labels"),
        (npz(x=np.full((2, 2, 2), np.inf), y=np.zeros(2)), "NaN or infinite"),
        (npz(x=np.zeros((2, 4)), y=np.zeros(2)), "expected (N, H, W) or (N, H, W, C)"),
    ],
)
def test_bad_npz_is_a_data_error(data: bytes, needle: str) -> None:
    with pytest.raises(DataError, match=None) as exc:
        load_images(data, task="regression")
    assert needle in str(exc.value)


def test_windows_take_every_column_and_the_target_horizon_rows_later() -> None:
    frame = pd.DataFrame({"a": np.arange(10.0), "y": np.arange(10.0) * 10})
    table = load_sequences(
        frame.to_csv(index=False).encode(), target="y", task="regression", steps=3, horizon=2
    )
    # 10 rows, windows of 3 and a label 2 rows after the last: rows 0..5 start a window.
    assert table.X.shape == (6, 3, 2)
    assert table.X[0].tolist() == [[0, 0], [1, 10], [2, 20]]
    assert table.y.tolist() == [40, 50, 60, 70, 80, 90]
    assert table.feature_names == ["a", "y"]
    assert table.window == {"steps": 3, "horizon": 2, "target": "y"}


def test_a_window_longer_than_the_series_is_a_data_error() -> None:
    csv = b"a,y\n1,2\n3,4\n5,6\n"
    with pytest.raises(DataError, match="needs at least 5 rows; the series has 3"):
        load_dataset(csv, kind="table", target="y", task="regression", window=(4, 1))


def _spec(layers: list[dict[str, Any]], **extra: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"task": "regression", "loss": "mse", "layers": [*layers, {"type": "Dense", "units": 1}]}
        | extra
    )


def test_shape_inference_follows_keras_arithmetic() -> None:
    spec = _spec(
        [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3},
            {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
            {
                "type": "Conv2D",
                "filters": 2,
                "kernel_size": [1, 2],
                "strides": 2,
                "padding": "same",
            },
            {"type": "Flatten"},
        ]
    )
    assert infer_shapes(spec.layers, (8, 8, 1)) == [(6, 6, 4), (3, 3, 4), (2, 2, 2), (8,), (1,)]
    seq = _spec(
        [
            {"type": "Conv1D", "filters": 3, "kernel_size": 4, "strides": 2},
            {"type": "LSTM", "units": 5, "return_sequences": True},
            {"type": "GlobalAveragePooling1D"},
        ]
    )
    assert infer_shapes(seq.layers, (10, 2)) == [(4, 3), (4, 5), (5,), (1,)]


def test_a_window_makes_the_input_steps_by_every_column() -> None:
    spec = _spec([{"type": "GRU", "units": 2}], window={"steps": 7, "horizon": 3})
    info = DataInfo(kind="table", n_rows=100, item_shape=(4,), n_columns=5)
    assert spec.input_shape(info) == (7, 5)
    spec.check_against_data(class_counts=None, data=info)


def test_embedding_needs_integer_features() -> None:
    spec = _spec([{"type": "Embedding", "input_dim": 5, "output_dim": 2}, {"type": "Flatten"}])
    spec.check_against_data(
        class_counts=None,
        data=DataInfo(kind="table", n_rows=9, item_shape=(3,), n_columns=4, integer_features=True),
    )
    with pytest.raises(SpecDataMismatch, match="Embedding looks up integer codes"):
        spec.check_against_data(
            class_counts=None, data=DataInfo(kind="table", n_rows=9, item_shape=(3,), n_columns=4)
        )


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_example_specs_fit_the_data_they_are_written_for() -> None:
    cnn = ModelSpec.model_validate_json((EXAMPLES / "digits-cnn.json").read_text())
    digits = DataInfo(kind="image", n_rows=1797, item_shape=(8, 8, 1))
    cnn.check_against_data(class_counts={str(d): 179 for d in range(10)}, data=digits)
    assert infer_shapes(cnn.layers, (8, 8, 1))[-1] == (10,)

    lstm = ModelSpec.model_validate_json((EXAMPLES / "sensor-lstm.json").read_text())
    series = DataInfo(kind="table", n_rows=500, item_shape=(3,), n_columns=4)
    lstm.check_against_data(class_counts=None, data=series)
    assert lstm.input_shape(series) == (24, 4)


def test_codes_outside_the_embedding_are_refused_before_training() -> None:
    from training.data import Table
    from training.pipeline import run_training

    spec = _spec([{"type": "Embedding", "input_dim": 5, "output_dim": 2}, {"type": "Flatten"}])
    X = np.array([[0, 1], [4, 7], [2, 3], [1, 1]], dtype=np.float32)
    table = Table(X, np.zeros(4, dtype=np.float32), ["a", "b"], None, "y")
    with pytest.raises(DataError, match="Raise input_dim to at least 8"):
        run_training(table, spec=spec)
