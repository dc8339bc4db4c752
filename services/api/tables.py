"""Inspect an uploaded CSV (pandas) and materialise scikit-learn's bundled datasets.

Everything a training job needs to be refused early is found here: the API must not
accept a table the worker cannot train on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd

from services.problems import ServiceError

# Datasets that ship inside scikit-learn: nothing is downloaded.
BUILTIN_DATASETS: dict[str, str] = {
    "breast_cancer": "binary classification, 569 rows × 30 features",
    "iris": "3-class classification, 150 rows × 4 features",
    "wine": "3-class classification, 178 rows × 13 features",
    "digits": "10-class classification, 1797 rows × 64 pixel features (8×8 images)",
    "diabetes": "regression, 442 rows × 10 features",
}
BUILTIN_PREFIX = "sklearn:"


@dataclass(frozen=True)
class TableSummary:
    n_rows: int
    columns: list[dict[str, str]]
    class_counts: dict[str, int] | None


def inspect_csv(data: bytes, *, target: str) -> TableSummary:
    if not data.strip():
        raise ServiceError(
            "upload_empty",
            "the uploaded file is empty; expected a CSV with a header row and data rows",
        )
    if b"\x00" in data[:8192]:
        raise ServiceError(
            "upload_not_csv",
            "the uploaded file is binary, not CSV text; expected a UTF-8 CSV with a header row",
        )
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ServiceError(
            "upload_not_csv",
            f"the file could not be read as CSV ({exc}); expected a UTF-8 CSV with a header row",
        ) from None
    if frame.empty or len(frame.columns) < 2:
        raise ServiceError(
            "upload_empty",
            f"the CSV has {len(frame)} data rows and {len(frame.columns)} columns; expected a header row, "
            "at least one data row, the target column and at least one feature column",
        )
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise ServiceError(
            "target_missing",
            f"the target column {target!r} is not in the CSV; its columns are {columns}",
        )
    missing = {str(c): int(n) for c, n in frame.isna().sum().items() if n}
    if missing:
        raise ServiceError(
            "missing_values",
            f"the CSV has missing values (column: count) {missing}; expected every cell filled — "
            "impute or drop those rows before uploading",
        )
    features = frame.drop(columns=[target])
    non_numeric = {
        str(c): str(t)
        for c, t in features.dtypes.items()
        if not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t)
    }
    if non_numeric:
        raise ServiceError(
            "non_numeric_features",
            f"feature columns must be numeric; these are not (column: dtype) {non_numeric}. "
            "Encode them as numbers before uploading",
        )
    y = frame[target]
    class_counts: dict[str, int] | None = None
    if (
        pd.api.types.is_integer_dtype(y)
        or pd.api.types.is_object_dtype(y)
        or pd.api.types.is_string_dtype(y)
        or pd.api.types.is_bool_dtype(y)
    ):
        counts = y.value_counts()
        class_counts = {
            str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))
        }
    return TableSummary(
        n_rows=len(frame),
        columns=[{"name": str(c), "dtype": str(t)} for c, t in frame.dtypes.items()],
        class_counts=class_counts,
    )


def builtin_csv(name: str) -> tuple[bytes, str]:
    """The CSV bytes (deterministic, so the same sha256 every time) and the target column."""
    if name not in BUILTIN_DATASETS:
        raise ServiceError(
            "unknown_builtin_dataset",
            f"no built-in dataset {name!r}; expected one of {sorted(BUILTIN_DATASETS)}",
        )
    from sklearn import datasets as skd  # imported on first use: it is slow to import

    loader = {
        "breast_cancer": skd.load_breast_cancer,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "digits": skd.load_digits,
        "diabetes": skd.load_diabetes,
    }[name]
    bunch = loader(as_frame=True)
    frame = bunch.frame
    return frame.to_csv(index=False).encode(), "target"
