"""Read an uploaded CSV table or NPZ of images, checked once for the API and the worker.

Pure pandas and NumPy (no TensorFlow), so the API imports it to refuse a file at upload,
and the worker reads the stored file with the same checks before it trains. Every
problem is a `DataError` whose message says what was found and what was expected.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from core.vocabulary import DataKind
from training.errors import (
    DataTooLarge,
    EmptyData,
    ImagesInvalid,
    MissingValues,
    NonNumericFeatures,
    NotCsv,
    NotNpz,
    TargetMissing,
)

# An NPZ of images has its labels in this array; it is the dataset's target.
IMAGE_TARGET = "y"
_CSV = "expected a UTF-8 CSV with a header row"


@dataclass(frozen=True)
class DataSummary:
    """What the registry records of a dataset: enough to check a spec without loading it."""

    kind: DataKind
    n_rows: int
    # [{"name", "dtype"}] in file order, the target included ("x" and "y" for images).
    columns: list[dict[str, str]]
    # {"label": count} when the target holds class labels, else None.
    class_counts: dict[str, int] | None
    # [rows, feature columns] for a table, [n, height, width, channels] for images.
    shape: list[int]


def read_csv(data: bytes, *, target: str) -> pd.DataFrame:
    """The table, once it has rows, the target, a feature, no missing cells and only
    numeric, finite features."""
    if not data.strip():
        raise EmptyData(f"the file is empty; {_CSV} and data rows")
    if b"\x00" in data[:8192]:
        raise NotCsv(f"the file is binary, not CSV text; {_CSV}")
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise NotCsv(f"the file could not be read as CSV ({exc}); {_CSV}") from None
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise TargetMissing(
            f"the target column {target!r} is not in the CSV; its columns are {columns}"
        )
    if len(columns) < 2:
        raise EmptyData(
            f"the CSV has no feature columns besides the target {target!r}; expected the "
            "target and at least one feature column"
        )
    if frame.empty:
        raise EmptyData("the CSV has a header but 0 data rows; expected at least one data row")
    missing = {str(c): int(n) for c, n in frame.isna().sum().items() if n}
    if missing:
        raise MissingValues(
            f"columns {list(missing)} have missing values (column: count {missing}); expected "
            "every cell filled: impute or drop those rows before uploading"
        )
    features = frame.drop(columns=[target])
    non_numeric = {
        str(c): str(t)
        for c, t in features.dtypes.items()
        if not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t)
    }
    if non_numeric:
        raise NonNumericFeatures(
            f"feature columns must be numeric; {list(non_numeric)} are not numeric (column: "
            f"dtype {non_numeric}). Encode them as numbers (for example one-hot) before uploading"
        )
    finite = np.isfinite(features.to_numpy(dtype=np.float64)).all(axis=0)
    if not finite.all():
        bad = [str(c) for c, ok in zip(features.columns, finite, strict=True) if not ok]
        raise NonNumericFeatures(
            f"feature columns {bad} hold infinite values; expected finite numbers"
        )
    return frame


def read_npz(data: bytes, *, max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``x`` images (N, H, W) or (N, H, W, C) and ``y`` labels (N,) of an NPZ.

    Each array's header is read first (numpy's own format reader): the shape and dtype it
    declares must take exactly the bytes the archive says the member holds, and the two
    arrays together at most ``max_bytes`` (None: no bound). Only then is the data read,
    no more than declared, so a lying header or a zip bomb is refused before it is
    decompressed.
    """
    savez = "expected the output of np.savez(file, x=images, y=labels)"
    if not data.startswith(b"PK"):
        raise NotNpz(f"the file is not an NPZ archive; {savez}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {
                info.filename.removesuffix(".npy"): info
                for info in archive.infolist()
                if info.filename.endswith(".npy")
            }
            missing = [k for k in ("x", "y") if k not in members]
            if missing:
                raise ImagesInvalid(
                    f"the NPZ has no array {missing[0]!r}; it holds {sorted(members)}. Expected "
                    "'x': images (N, H, W) or (N, H, W, C) and 'y': labels (N,)"
                )
            declared = members["x"].file_size + members["y"].file_size
            if max_bytes is not None and declared > max_bytes:
                raise DataTooLarge(
                    f"the NPZ's arrays x and y take {declared} bytes unpacked; at most "
                    f"{max_bytes} are accepted: send fewer or smaller images"
                )
            x = _read_member(archive, members["x"], "x")
            y = _read_member(archive, members["y"], "y")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise NotNpz(f"the file is not an NPZ archive ({exc}); {savez}") from None
    problem = _image_problem(x, y)
    if problem:
        raise ImagesInvalid(problem)
    return x, y


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    """One ``.npy`` member, its header checked against the member's size before its data
    is read."""
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"NPY format version {version[0]}.{version[1]} is not read")
        except ValueError as exc:
            raise ImagesInvalid(f"array {name!r} has no valid NPY header ({exc})") from None
        if dtype.hasobject:
            # Object arrays need pickle, which is refused.
            raise ImagesInvalid(
                f"array {name!r} holds Python objects, which are not read (they need pickle); "
                "expected numbers or strings"
            )
        if any(d < 0 for d in shape):
            raise ImagesInvalid(f"array {name!r} declares the shape {list(shape)}")
        size = math.prod(shape) * dtype.itemsize
        header = f.tell()
        if header + size != info.file_size:
            raise ImagesInvalid(
                f"array {name!r} declares shape {list(shape)} of {dtype} ({size} bytes), but the "
                f"archive holds {info.file_size - header} bytes for it: the file is damaged "
                "or was not written by np.save"
            )
        buffer = bytearray(size)
        # ZipExtFile is a BufferedIOBase: the data lands in the array's buffer, once.
        if cast(io.BufferedIOBase, f).readinto(buffer) != size:
            raise ImagesInvalid(f"array {name!r} ends before its {size} bytes")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran else "C")


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


def inspect_csv(data: bytes, *, target: str) -> DataSummary:
    frame = read_csv(data, target=target)
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
    return DataSummary(
        kind=DataKind.TABLE,
        n_rows=len(frame),
        columns=[{"name": str(c), "dtype": str(t)} for c, t in frame.dtypes.items()],
        class_counts=class_counts,
        shape=[len(frame), len(frame.columns) - 1],
    )


def inspect_npz(data: bytes, *, max_bytes: int | None = None) -> DataSummary:
    x, y = read_npz(data, max_bytes=max_bytes)
    return DataSummary(
        kind=DataKind.IMAGE,
        n_rows=int(x.shape[0]),
        columns=[
            {"name": "x", "dtype": str(x.dtype)},
            {"name": IMAGE_TARGET, "dtype": str(y.dtype)},
        ],
        class_counts=_counts(y) if y.dtype.kind in "biuUS" else None,
        shape=[int(d) for d in x.shape] + ([1] if x.ndim == 3 else []),
    )


def inspect(
    data: bytes, *, kind: DataKind, target: str, max_npz_bytes: int | None = None
) -> DataSummary:
    """Check and summarise a table (``target`` names its label column) or images (an NPZ
    whose arrays take at most ``max_npz_bytes`` unpacked; None: no bound)."""
    if kind == DataKind.IMAGE:
        return inspect_npz(data, max_bytes=max_npz_bytes)
    return inspect_csv(data, target=target)


def _counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {str(k): int(v) for k, v in zip(values.tolist(), counts.tolist(), strict=True)}
