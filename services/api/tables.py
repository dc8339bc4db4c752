"""Inspect an uploaded CSV (pandas) or NPZ of images (NumPy), and materialise
scikit-learn's bundled datasets.

Everything a training job needs to be refused early is found here: the API must not
accept a table the worker cannot train on.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from registry.models import Dataset
from services.problems import ServiceError
from training.spec import DataInfo

# Datasets that ship inside scikit-learn: nothing is downloaded.
BUILTIN_DATASETS: dict[str, str] = {
    "breast_cancer": "binary classification, 569 rows × 30 features",
    "iris": "3-class classification, 150 rows × 4 features",
    "wine": "3-class classification, 178 rows × 13 features",
    "digits": "10-class classification, 1797 rows × 64 pixel features (8×8 images)",
    "diabetes": "regression, 442 rows × 10 features",
    "digits_images": "10-class classification, 1797 images of 8×8×1 (the digits as images)",
}
# Built-in datasets stored as images (NPZ) rather than tables.
BUILTIN_IMAGES = {"digits_images"}
IMAGE_TARGET = "y"
BUILTIN_PREFIX = "sklearn:"


@dataclass(frozen=True)
class TableSummary:
    n_rows: int
    columns: list[dict[str, str]]
    class_counts: dict[str, int] | None
    shape: list[int]


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
        shape=[len(frame), len(frame.columns) - 1],
    )


def inspect_npz(data: bytes) -> TableSummary:
    """Check an NPZ of images: ``x`` (N, H, W) or (N, H, W, C) numbers, ``y`` (N,) labels."""
    if not data.startswith(b"PK"):
        raise ServiceError(
            "upload_not_npz",
            "the file is not an NPZ archive; expected the output of "
            "np.savez(file, x=images, y=labels)",
        )
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ServiceError(
            "upload_not_npz",
            f"the NPZ archive could not be read ({exc}); expected np.savez(file, x=..., y=...)",
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ServiceError("upload_not_npz", "expected an NPZ archive of arrays x and y")
    with archive:
        missing = [k for k in ("x", "y") if k not in archive.files]
        if missing:
            raise ServiceError(
                "images_invalid",
                f"the NPZ has no array {missing[0]!r}; it holds {archive.files}. Expected 'x': "
                "images (N, H, W) or (N, H, W, C) and 'y': labels (N,)",
            )
        try:
            x, y = archive["x"], archive["y"]
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ServiceError(
                "images_invalid", f"the arrays could not be read without pickle ({exc})"
            ) from None
    problem = _image_problem(x, y)
    if problem:
        raise ServiceError("images_invalid", problem)
    class_counts: dict[str, int] | None = None
    if y.dtype.kind in "biuUS":
        labels, counts = np.unique(y, return_counts=True)
        class_counts = {
            str(k): int(v) for k, v in zip(labels.tolist(), counts.tolist(), strict=True)
        }
    shape = [int(d) for d in x.shape] + ([1] if x.ndim == 3 else [])
    return TableSummary(
        n_rows=int(x.shape[0]),
        columns=[{"name": "x", "dtype": str(x.dtype)}, {"name": "y", "dtype": str(y.dtype)}],
        class_counts=class_counts,
        shape=shape,
    )


def _image_problem(x: np.ndarray, y: np.ndarray) -> str | None:
    if x.ndim not in (3, 4):
        return f"x has shape {list(x.shape)}; expected images (N, H, W) or (N, H, W, C)"
    if x.ndim == 4 and x.shape[3] > 4:
        return (
            f"x has shape {list(x.shape)}: {x.shape[3]} channels; expected channels last, "
            "(N, H, W, C) with C at most 4"
        )
    if y.ndim != 1:
        return f"y has shape {list(y.shape)}; expected one label per image, (N,)"
    if x.shape[0] != y.shape[0]:
        return f"x holds {x.shape[0]} images but y holds {y.shape[0]} labels; expected the same N"
    if x.shape[0] == 0 or min(x.shape[1:]) == 0:
        return f"x has shape {list(x.shape)}; expected at least one non-empty image"
    if x.dtype.kind not in "biuf":
        return f"x holds {x.dtype} values; expected numbers (integers or floats)"
    if y.dtype.kind not in "biufUS":
        return f"y holds {y.dtype} values; expected numbers or strings"
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        return (
            f"x holds {int(np.sum(~np.isfinite(x)))} NaN or infinite values; expected finite pixels"
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        return "y holds NaN or infinite values; expected finite labels or targets"
    return None


def builtin_npz(name: str) -> bytes:
    """The built-in image datasets as NPZ bytes, byte-for-byte the same every time."""
    from sklearn import datasets as skd

    if name != "digits_images":
        raise ServiceError(
            "unknown_builtin_dataset",
            f"no built-in image dataset {name!r}; expected one of {sorted(BUILTIN_IMAGES)}",
        )
    bunch = skd.load_digits()
    arrays = {"x": bunch.images.astype(np.float32)[..., np.newaxis], "y": bunch.target}
    buffer = io.BytesIO()
    # np.savez stamps each member with the current time; a fixed stamp keeps the sha256.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(
                zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue()
            )
    return buffer.getvalue()


def data_info(dataset: Dataset) -> DataInfo:
    """What the spec check needs to know about a stored dataset's shape and dtypes."""
    if dataset.kind == "image":
        shape = dataset.shape or []
        return DataInfo(kind="image", n_rows=dataset.n_rows, item_shape=tuple(shape[1:]))
    features = [c for c in dataset.columns if c["name"] != dataset.target]
    target_dtype = next(
        (c["dtype"] for c in dataset.columns if c["name"] == dataset.target), "object"
    )
    return DataInfo(
        kind="table",
        n_rows=dataset.n_rows,
        item_shape=(len(features),),
        n_columns=len(dataset.columns),
        integer_features=all(c["dtype"].startswith(("int", "uint")) for c in features),
        all_numeric=target_dtype.startswith(("int", "uint", "float")),
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
