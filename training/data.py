"""Turn an uploaded CSV into a numeric feature matrix and an encoded target.

The API validates uploads before a job is queued; the checks here are defence, so a bad
file fails with a message a person can act on instead of a NumPy traceback mid-training.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.errors import DataError

_CLASSIFICATION_TASKS = ("binary", "multiclass")
_TASKS = (*_CLASSIFICATION_TASKS, "regression")


@dataclass(frozen=True)
class Table:
    """Features and target of one dataset, ready for Keras.

    ``y`` holds class indices into ``class_labels`` for classification (int64) and the
    target values for regression (float32).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_labels: list[int | str] | None
    target: str


def load_table(csv_bytes: bytes, *, target: str, task: str) -> Table:
    if task not in _TASKS:
        raise DataError(f"unknown task {task!r}; expected one of {list(_TASKS)}")
    frame = _read_csv(csv_bytes)
    if target not in frame.columns:
        raise DataError(
            f"the target column {target!r} is not in the dataset; "
            f"its columns are {[str(c) for c in frame.columns]}"
        )
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError(f"the dataset has no feature columns besides the target {target!r}")
    if len(frame) == 0:
        raise DataError("the dataset has a header but no rows")

    missing = [str(c) for c in frame.columns if frame[c].isna().any()]
    if missing:
        raise DataError(
            f"columns {missing} have missing values; fill or drop them before uploading"
        )
    non_numeric = [
        str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
    ]
    if non_numeric:
        raise DataError(
            f"feature columns {non_numeric} are not numeric; encode them as numbers "
            "(for example one-hot) before uploading"
        )
    X = features.to_numpy(dtype=np.float32)
    if not np.isfinite(X).all():
        finite = np.isfinite(X).all(axis=0)
        bad = [str(c) for c, ok in zip(features.columns, finite, strict=True) if not ok]
        raise DataError(f"feature columns {bad} hold infinite values or overflow float32")

    column = frame[target]
    if task in _CLASSIFICATION_TASKS:
        y, labels = _encode_labels(column)
        return Table(X, y, [str(c) for c in features.columns], labels, target)
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DataError(
            f"task 'regression' needs a numeric target, but {target!r} holds "
            f"{column.dtype} values; use task 'binary' or 'multiclass' for labels"
        )
    y_reg = column.to_numpy(dtype=np.float32)
    if not np.isfinite(y_reg).all():
        raise DataError(f"the target column {target!r} holds infinite values")
    return Table(X, y_reg, [str(c) for c in features.columns], None, target)


def _read_csv(csv_bytes: bytes) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(csv_bytes))
    except pd.errors.EmptyDataError as exc:
        raise DataError("the dataset is empty; expected a CSV with a header row") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"the dataset is not a readable UTF-8 CSV: {exc}") from exc


def _encode_labels(column: pd.Series) -> tuple[np.ndarray, list[int | str]]:
    values = column.to_numpy()
    if pd.api.types.is_integer_dtype(column):
        keys: np.ndarray = values.astype(np.int64)
    elif pd.api.types.is_float_dtype(column) and bool(np.all(np.mod(values, 1) == 0)):
        # A label column written as "0.0, 1.0" is still integer labels.
        keys = values.astype(np.int64)
    else:
        keys = column.astype(str).to_numpy()
    uniques, y = np.unique(keys, return_inverse=True)
    labels: list[int | str] = (
        [int(v) for v in uniques] if uniques.dtype.kind == "i" else [str(v) for v in uniques]
    )
    if len(labels) < 2:
        raise DataError(
            f"the target column {column.name!r} has only one class ({labels}); "
            "classification needs at least two"
        )
    return y.astype(np.int64).reshape(-1), labels
