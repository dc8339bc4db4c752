"""scikit-learn's bundled datasets, materialised as the bytes of an upload.

A job names one as `sklearn:<name>`; the first use stores it like an upload. Nothing is
downloaded, and the bytes are the same every time, so the sha256 (and the dataset row)
is the same too.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from core.vocabulary import DataKind
from services.api.errors import UnknownBuiltinDataset
from training.inspect import IMAGE_TARGET

PREFIX = "sklearn:"
DATASETS: dict[str, str] = {
    "breast_cancer": "binary classification, 569 rows × 30 features",
    "iris": "3-class classification, 150 rows × 4 features",
    "wine": "3-class classification, 178 rows × 13 features",
    "digits": "10-class classification, 1797 rows × 64 pixel features (8×8 images)",
    "diabetes": "regression, 442 rows × 10 features",
    "digits_images": "10-class classification, 1797 images of 8×8×1 (the digits as images)",
}
# Built-in datasets stored as images (NPZ) rather than tables.
IMAGES = {"digits_images"}


def materialise(name: str) -> tuple[bytes, DataKind, str]:
    """The dataset's bytes, its kind and its target column."""
    if name not in DATASETS:
        raise UnknownBuiltinDataset(
            f"no built-in dataset {name!r}; expected one of {sorted(DATASETS)}"
        )
    if name in IMAGES:
        return _digits_npz(), DataKind.IMAGE, IMAGE_TARGET
    return _csv(name), DataKind.TABLE, "target"


def _csv(name: str) -> bytes:
    from sklearn import datasets as skd  # imported on first use: it is slow to import

    loader = {
        "breast_cancer": skd.load_breast_cancer,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "digits": skd.load_digits,
        "diabetes": skd.load_diabetes,
    }[name]
    csv: str = loader(as_frame=True).frame.to_csv(index=False)
    return csv.encode()


def _digits_npz() -> bytes:
    from sklearn import datasets as skd

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
