"""Turn an uploaded dataset into numeric features and an encoded target.

Three kinds: a table (CSV → X of shape (N, F)), images (NPZ with arrays ``x`` of shape
(N, H, W) or (N, H, W, C) and ``y`` of shape (N,) → X of shape (N, H, W, C)), and a
sequence (a time-series CSV cut into windows → X of shape (N_windows, steps, F)).

The API validates uploads before a job is queued; the checks here are defence, so a bad
file fails with a message a person can act on instead of a NumPy traceback mid-training.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

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
    feature_names: list[str] | None
    class_labels: list[int | str] | None
    target: str
    kind: str = "table"
    # {"steps", "horizon", "target"} for a sequence, else None.
    window: dict[str, Any] | None = field(default=None)


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


def load_dataset(
    data: bytes,
    *,
    kind: str,
    target: str,
    task: str,
    window: tuple[int, int] | None = None,
) -> Table:
    """Load a stored dataset the way a job's spec reads it.

    ``kind`` is the dataset's kind ("table" or "image"); ``window`` (steps, horizon)
    turns a table into a sequence.
    """
    if kind == "image":
        if window is not None:
            raise DataError("a window cuts time-series tables; this dataset holds images")
        return load_images(data, task=task)
    if kind != "table":
        raise DataError(f"unknown dataset kind {kind!r}; expected 'table' or 'image'")
    if window is not None:
        return load_sequences(data, target=target, task=task, steps=window[0], horizon=window[1])
    return load_table(data, target=target, task=task)


def load_images(npz_bytes: bytes, *, task: str) -> Table:
    """Images from an NPZ (``np.savez``) with ``x`` (N, H, W[, C]) and ``y`` (N,)."""
    if task not in _TASKS:
        raise DataError(f"unknown task {task!r}; expected one of {list(_TASKS)}")
    x, y_raw = read_npz(npz_bytes)
    X = x.astype(np.float32)
    if X.ndim == 3:
        X = X[..., np.newaxis]
    if task in _CLASSIFICATION_TASKS:
        y, labels = _encode_labels(pd.Series(y_raw, name="y"))
        return Table(X, y, None, labels, "y", kind="image")
    if y_raw.dtype.kind not in "biuf":
        raise DataError(f"task 'regression' needs numeric y; y holds {y_raw.dtype} values")
    return Table(X, y_raw.astype(np.float32), None, None, "y", kind="image")


def read_npz(npz_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The ``x`` and ``y`` arrays of an NPZ, checked; raises DataError saying what is wrong."""
    try:
        archive = np.load(io.BytesIO(npz_bytes), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(
            f"the file is not an NPZ archive ({exc}); expected np.savez(file, x=..., y=...)"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            "the file is a single NumPy array, not an NPZ archive; "
            "expected np.savez(file, x=images, y=labels)"
        )
    with archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise DataError(
                f"the NPZ has no array {missing[0]!r}; it holds {archive.files}, expected "
                "'x' (N, H, W) or (N, H, W, C) images and 'y' (N,) labels"
            )
        try:
            x = archive["x"]
            y = archive["y"]
        except ValueError as exc:  # object arrays need pickle, which is refused
            raise DataError(f"the NPZ arrays could not be read without pickle: {exc}") from None
    if x.ndim not in (3, 4):
        raise DataError(f"x has shape {list(x.shape)}; expected (N, H, W) or (N, H, W, C) images")
    if x.ndim == 4 and x.shape[3] > 4:
        raise DataError(
            f"x has {x.shape[3]} channels (shape {list(x.shape)}); expected channels last, "
            "(N, H, W, C) with C at most 4"
        )
    if y.ndim != 1:
        raise DataError(f"y has shape {list(y.shape)}; expected one label per image, (N,)")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x holds {x.shape[0]} images but y holds {y.shape[0]} labels")
    if x.shape[0] == 0 or min(x.shape[1:]) == 0:
        raise DataError(f"x has shape {list(x.shape)}; expected at least one non-empty image")
    if x.dtype.kind not in "biuf":
        raise DataError(f"x holds {x.dtype} values; expected numbers (integers or floats)")
    if y.dtype.kind not in "biufUS":
        raise DataError(f"y holds {y.dtype} values; expected numbers or strings")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError("x holds NaN or infinite values; expected finite pixel values")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError("y holds NaN or infinite values")
    return x, y


def load_sequences(csv_bytes: bytes, *, target: str, task: str, steps: int, horizon: int) -> Table:
    """Windows over a time-series CSV whose rows are in time order.

    Window i is rows i .. i+steps-1 of every column (the target included: its past is
    usually the best predictor); its label is the target at row i+steps-1+horizon.
    """
    table = load_table(csv_bytes, target=target, task=task)
    frame = _read_csv(csv_bytes)
    series = frame.to_numpy(dtype=np.float32) if _all_numeric(frame) else None
    if series is None:
        raise DataError(
            "a window feeds every column, the target included, to the model at each step; "
            f"every column must be numeric and {target!r} is not"
        )
    n_windows = len(series) - steps - horizon + 1
    if n_windows < 1:
        raise DataError(
            f"a window of {steps} steps with horizon {horizon} needs at least "
            f"{steps + horizon} rows; the series has {len(series)}"
        )
    index = np.arange(n_windows)[:, None] + np.arange(steps)[None, :]
    X = series[index]
    y = table.y[np.arange(n_windows) + steps - 1 + horizon]
    return Table(
        X,
        y,
        [str(c) for c in frame.columns],
        table.class_labels,
        target,
        kind="sequence",
        window={"steps": steps, "horizon": horizon, "target": target},
    )


def _all_numeric(frame: pd.DataFrame) -> bool:
    return all(
        pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in frame.dtypes
    )
