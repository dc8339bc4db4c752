"""training/data.py: stored datasets as features and an encoded target: tables, images
and windows cut from a time series."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.data import load_dataset, load_images, load_sequences, load_table
from training.errors import DataError


def test_loads_features_and_integer_labels() -> None:
    csv = b"a,b,label\n1,2.5,1\n3,4.5,0\n5,6.5,1\n"

    table = load_table(csv, target="label", task="binary")

    assert table.X.dtype == np.float32
    assert table.X.tolist() == [[1.0, 2.5], [3.0, 4.5], [5.0, 6.5]]
    assert table.y.dtype == np.int64
    assert table.y.tolist() == [1, 0, 1]
    assert table.feature_names == ["a", "b"]
    assert table.class_labels == [0, 1]
    assert all(type(v) is int for v in table.class_labels)
    assert table.target == "label"


def test_target_column_need_not_be_last() -> None:
    table = load_table(b"y,a,b\n7,1,2\n8,3,4\n9,5,6\n", target="y", task="multiclass")

    assert table.feature_names == ["a", "b"]
    assert table.class_labels == [7, 8, 9]
    assert table.y.tolist() == [0, 1, 2]


def test_string_labels_are_sorted_and_encoded() -> None:
    csv = b"x,species\n1,virginica\n2,setosa\n3,versicolor\n4,setosa\n"

    table = load_table(csv, target="species", task="multiclass")

    assert table.class_labels == ["setosa", "versicolor", "virginica"]
    assert table.y.tolist() == [2, 0, 1, 0]


def test_float_written_integer_labels_are_ints() -> None:
    table = load_table(b"x,t\n1,0.0\n2,1.0\n", target="t", task="binary")

    assert table.class_labels == [0, 1]
    assert table.y.tolist() == [0, 1]


def test_regression_target_is_float32_without_labels() -> None:
    table = load_table(b"x,t\n1,0.5\n2,1.25\n3,-2\n", target="t", task="regression")

    assert table.y.dtype == np.float32
    assert table.y.tolist() == [0.5, 1.25, -2.0]
    assert table.class_labels is None


@pytest.mark.parametrize(
    ("csv", "target", "task", "expected", "code"),
    [
        (b"a,b\n1,2\n3,4\n", "label", "binary", "'label' is not in the CSV", "target_missing"),
        (
            b"a,colour,label\n1,red,0\n2,blue,1\n",
            "label",
            "binary",
            "['colour'] are not numeric",
            "non_numeric_features",
        ),
        (
            b"a,b,label\n1,,0\n2,3,1\n",
            "label",
            "binary",
            "['b'] have missing values",
            "missing_values",
        ),
        (
            b"a,label\n1,0\n2,\n",
            "label",
            "binary",
            "['label'] have missing values",
            "missing_values",
        ),
        (b"a,label\n1,x\n2,y\n", "label", "regression", "needs a numeric target", "data_invalid"),
        (b"a,label\n1,0\n2,0\n", "label", "binary", "only one class", "data_invalid"),
        (b"", "label", "binary", "empty", "upload_empty"),
        (b"a,label\n", "label", "binary", "0 data rows", "upload_empty"),
        (b"label\n1\n0\n", "label", "binary", "no feature columns", "upload_empty"),
        (b"a,label\n1,0\n2,1\n", "label", "ranking", "unknown task", "data_invalid"),
    ],
)
def test_bad_data_raises_data_error(
    csv: bytes, target: str, task: str, expected: str, code: str
) -> None:
    with pytest.raises(DataError) as info:
        load_table(csv, target=target, task=task)

    assert expected in str(info.value)
    assert info.value.code == code


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
        (npz(x=np.zeros((2, 4)), y=np.zeros(2)), "expected images (N, H, W) or (N, H, W, C)"),
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
