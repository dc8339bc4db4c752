"""training/inspect.py: the checks a CSV table or an NPZ of images passes, written once:
the API runs them at upload (inspect) and the worker when it loads the stored file
(training.data), with the same error and the same words."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from core.vocabulary import DataKind
from training.data import load_dataset
from training.errors import DataError
from training.inspect import inspect, inspect_csv, inspect_npz


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


X = np.zeros((6, 4, 4), dtype=np.float32)
Y = np.arange(6) % 2
BAD = [
    (b"", DataKind.TABLE, "upload_empty", "the file is empty"),
    (b"a,label\n", DataKind.TABLE, "upload_empty", "0 data rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", DataKind.TABLE, "upload_not_csv", "not CSV text"),
    (b"a,b\n1,2\n", DataKind.TABLE, "target_missing", "'label' is not in the CSV"),
    (b"label\n1\n0\n", DataKind.TABLE, "upload_empty", "no feature columns"),
    (b"a,label\n1,\n2,1\n", DataKind.TABLE, "missing_values", "['label'] have missing values"),
    (b"a,label\nx,0\ny,1\n", DataKind.TABLE, "non_numeric_features", "['a'] are not numeric"),
    (b"a,label\ninf,0\n1,1\n", DataKind.TABLE, "non_numeric_features", "['a'] hold infinite"),
    (b"a,b\n1,2\n", DataKind.IMAGE, "upload_not_npz", "not an NPZ archive"),
    (npz(x=X), DataKind.IMAGE, "images_invalid", "no array 'y'"),
    (npz(x=X, y=Y[:5]), DataKind.IMAGE, "images_invalid", "x holds 6 images but y holds 5"),
    (npz(x=np.zeros((6, 4, 4, 9)), y=Y), DataKind.IMAGE, "images_invalid", "9 channels"),
    (npz(x=np.full((6, 4, 4), np.nan), y=Y), DataKind.IMAGE, "images_invalid", "NaN"),
]


@pytest.mark.parametrize(("data", "kind", "code", "needle"), BAD)
def test_upload_and_worker_refuse_a_bad_file_alike(
    data: bytes, kind: DataKind, code: str, needle: str
) -> None:
    with pytest.raises(DataError) as at_upload:
        inspect(data, kind=kind, target="label")
    with pytest.raises(DataError) as in_worker:
        load_dataset(data, kind=kind, target="label", task="binary")

    assert at_upload.value.code == in_worker.value.code == code
    assert str(at_upload.value) == str(in_worker.value)
    assert needle in str(at_upload.value)


def test_a_table_summary_records_shape_dtypes_and_classes() -> None:
    summary = inspect_csv(b"a,b,label\n1.0,2,x\n2.0,1,y\n3.0,0,x\n", target="label")

    assert summary.kind == DataKind.TABLE
    assert (summary.n_rows, summary.shape) == (3, [3, 2])
    assert summary.columns[:2] == [
        {"name": "a", "dtype": "float64"},
        {"name": "b", "dtype": "int64"},
    ]
    # pandas 3 names text columns "str", earlier releases "object".
    assert summary.columns[2] in (
        {"name": "label", "dtype": "str"},
        {"name": "label", "dtype": "object"},
    )
    assert summary.class_counts == {"x": 2, "y": 1}
    assert inspect_csv(b"a,t\n1,0.5\n2,1.5\n", target="t").class_counts is None


def test_an_image_summary_adds_the_channel_axis() -> None:
    summary = inspect_npz(npz(x=np.zeros((5, 3, 2), np.uint8), y=np.array([2, 0, 2, 10, 0])))

    assert summary.kind == DataKind.IMAGE
    assert summary.shape == [5, 3, 2, 1]
    assert summary.class_counts == {"0": 2, "2": 2, "10": 1}
    assert [c["name"] for c in summary.columns] == ["x", "y"]
