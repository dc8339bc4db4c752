"""Turn a stored dataset into numeric features and an encoded target, as a spec reads it.

Three kinds: a table (CSV → X of shape (N, F)), images (NPZ with ``x`` (N, H, W) or
(N, H, W, C) and ``y`` (N,) → X of shape (N, H, W, C)), and a sequence (a time-series CSV
cut into windows → X of shape (N_windows, steps, F)). The file is read with the same
checks as at upload (training.inspect); what is added here depends on the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.vocabulary import DataKind, Task
from training.errors import DataError
from training.inspect import IMAGE_TARGET, read_csv, read_npz
from training.spec import DataInfo


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
    kind: DataKind = DataKind.TABLE
    # {"steps", "horizon", "target"} for a sequence, else None.
    window: dict[str, Any] | None = field(default=None)

    def info(self) -> DataInfo:
        """What the spec check needs to know of these arrays (training.spec.compat)."""
        counts = None
        if self.class_labels is not None:
            n = np.bincount(self.y.astype(np.int64), minlength=len(self.class_labels))
            counts = {str(label): int(c) for label, c in zip(self.class_labels, n, strict=True)}
        return DataInfo(
            kind=self.kind,
            n_rows=int(self.X.shape[0]),
            item_shape=tuple(int(d) for d in self.X.shape[1:]),
            class_counts=counts,
            n_columns=int(self.X.shape[-1]) + (0 if self.kind == DataKind.SEQUENCE else 1),
            # Only an Embedding over a table asks; no need to scan images.
            integer_features=self.kind == DataKind.TABLE and bool(np.all(np.mod(self.X, 1) == 0)),
        )


def _task(task: str) -> Task:
    try:
        return Task(task)
    except ValueError:
        raise DataError(
            f"unknown task {task!r}; expected one of {[t.value for t in Task]}"
        ) from None


def load_table(csv_bytes: bytes, *, target: str, task: str) -> Table:
    return _from_frame(read_csv(csv_bytes, target=target), target=target, task=_task(task))


def _from_frame(frame: pd.DataFrame, *, target: str, task: Task) -> Table:
    features = frame.drop(columns=[target])
    X = features.to_numpy(dtype=np.float32)
    if not np.isfinite(X).all():
        finite = np.isfinite(X).all(axis=0)
        bad = [str(c) for c, ok in zip(features.columns, finite, strict=True) if not ok]
        raise DataError(f"feature columns {bad} hold values that overflow float32")
    names = [str(c) for c in features.columns]
    column = frame[target]
    if task.classifies:
        y, labels = _encode_labels(column)
        return Table(X, y, names, labels, target)
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DataError(
            f"task 'regression' needs a numeric target, but {target!r} holds "
            f"{column.dtype} values; use task 'binary' or 'multiclass' for labels"
        )
    y_reg = column.to_numpy(dtype=np.float32)
    if not np.isfinite(y_reg).all():
        raise DataError(f"the target column {target!r} holds infinite values")
    return Table(X, y_reg, names, None, target)


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
    if kind == DataKind.IMAGE:
        if window is not None:
            raise DataError("a window cuts time-series tables; this dataset holds images")
        return load_images(data, task=task)
    if kind != DataKind.TABLE:
        raise DataError(f"unknown dataset kind {kind!r}; expected 'table' or 'image'")
    if window is not None:
        return load_sequences(data, target=target, task=task, steps=window[0], horizon=window[1])
    return load_table(data, target=target, task=task)


def load_images(npz_bytes: bytes, *, task: str) -> Table:
    """Images from an NPZ (``np.savez``) with ``x`` (N, H, W[, C]) and ``y`` (N,)."""
    task_ = _task(task)
    x, y_raw = read_npz(npz_bytes)
    X = x.astype(np.float32)
    if X.ndim == 3:
        X = X[..., np.newaxis]
    if task_.classifies:
        y, labels = _encode_labels(pd.Series(y_raw, name=IMAGE_TARGET))
        return Table(X, y, None, labels, IMAGE_TARGET, kind=DataKind.IMAGE)
    if y_raw.dtype.kind not in "biuf":
        raise DataError(f"task 'regression' needs numeric y; y holds {y_raw.dtype} values")
    return Table(X, y_raw.astype(np.float32), None, None, IMAGE_TARGET, kind=DataKind.IMAGE)


def load_sequences(csv_bytes: bytes, *, target: str, task: str, steps: int, horizon: int) -> Table:
    """Windows over a time-series CSV whose rows are in time order.

    Window i is rows i .. i+steps-1 of every column (the target included: its past is
    usually the best predictor); its label is the target at row i+steps-1+horizon.
    """
    frame = read_csv(csv_bytes, target=target)
    table = _from_frame(frame, target=target, task=_task(task))
    if not all(
        pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in frame.dtypes
    ):
        raise DataError(
            "a window feeds every column, the target included, to the model at each step; "
            f"every column must be numeric and {target!r} is not"
        )
    series = frame.to_numpy(dtype=np.float32)
    n_windows = len(series) - steps - horizon + 1
    if n_windows < 1:
        raise DataError(
            f"a window of {steps} steps with horizon {horizon} needs at least "
            f"{steps + horizon} rows; the series has {len(series)}"
        )
    index = np.arange(n_windows)[:, None] + np.arange(steps)[None, :]
    return Table(
        series[index],
        table.y[np.arange(n_windows) + steps - 1 + horizon],
        [str(c) for c in frame.columns],
        table.class_labels,
        target,
        kind=DataKind.SEQUENCE,
        window={"steps": steps, "horizon": horizon, "target": target},
    )
