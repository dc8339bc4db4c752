"""training/inspect.py: the checks a CSV table or an NPZ of images passes, written once:
the API runs them at upload (inspect) and the worker when it loads the stored file
(training.data), with the same error and the same words."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import numpy as np
import pytest

from core.vocabulary import DataKind
from training.data import load_dataset
from training.errors import DataError, DataTooLarge, ImagesInvalid
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


def npy(array: np.ndarray, *, shape: tuple[int, ...] | None = None) -> bytes:
    """An .npy file whose header may declare another shape than the data it holds."""
    out = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(array.dtype),
        "fortran_order": False,
        "shape": array.shape if shape is None else shape,
    }
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + array.tobytes()


def archive(compression: int = zipfile.ZIP_STORED, **members: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("x", "needle"),
    [
        # Claims a petabyte of pixels: refused from the header, nothing allocated.
        (npy(X, shape=(10**5, 10**5, 10**5)), "declares shape [100000, 100000, 100000]"),
        # Claims fewer bytes than it holds.
        (npy(X, shape=(2, 4, 4)), "but the archive holds 384 bytes"),
        (b"\x93NUMPY\x01\x00\x04\x00{}\n ", "has no valid NPY header"),
        (npy(np.array([None, 1], dtype=object)), "holds Python objects"),
    ],
)
def test_an_npz_whose_header_does_not_match_its_data_is_refused_at_upload_and_in_the_worker(
    x: bytes, needle: str
) -> None:
    data = archive(x=x, y=npy(Y))
    with pytest.raises(ImagesInvalid, match=re.escape(needle)) as at_upload:
        inspect(data, kind=DataKind.IMAGE, target="y", max_npz_bytes=10**6)
    with pytest.raises(ImagesInvalid) as in_worker:
        load_dataset(data, kind=DataKind.IMAGE, target="y", task="binary")
    assert str(at_upload.value) == str(in_worker.value)


def test_a_zip_bomb_is_refused_from_its_declared_sizes_before_it_is_decompressed() -> None:
    zeros = np.zeros((256, 64, 64), np.uint8)  # 1 MiB that deflates to about 1 KiB
    bomb = archive(zipfile.ZIP_DEFLATED, x=npy(zeros), y=npy(np.zeros(256, np.int64)))
    assert len(bomb) < 10_000

    with pytest.raises(DataTooLarge, match="take 1050880 bytes unpacked; at most 100000") as exc:
        inspect(bomb, kind=DataKind.IMAGE, target="y", max_npz_bytes=100_000)
    assert exc.value.code == "data_too_large"
    # Under a bound it fits, it is read as any NPZ.
    assert inspect(bomb, kind=DataKind.IMAGE, target="y", max_npz_bytes=2**21).n_rows == 256


@pytest.mark.parametrize(
    ("stream", "outcome"),
    [
        # Another array's stream under the entry: the first 512 bytes do not match the
        # entry's CRC, and the read stops there.
        (npy(np.zeros((4096, 16, 16), np.float32)), "Bad CRC-32 for file 'x.npy'"),
        # The header agrees with the entry and 4 MiB more follow: only the declared bytes
        # are decompressed, and the archive reads as the small array it claims to be.
        (npy(X) + bytes(4 * 2**20), None),
    ],
)
def test_a_member_that_unpacks_to_more_than_its_entry_says_is_not_read_past_it(
    stream: bytes, outcome: str | None
) -> None:
    honest = archive(zipfile.ZIP_DEFLATED, x=npy(X), y=npy(Y))
    with zipfile.ZipFile(io.BytesIO(honest)) as z:
        entry = z.getinfo("x.npy")
    big = archive(zipfile.ZIP_DEFLATED, x=stream, y=npy(Y))
    lying = _with_entry(big, "x.npy", file_size=entry.file_size, crc=entry.CRC)

    if outcome is None:
        assert inspect(lying, kind=DataKind.IMAGE, target="y", max_npz_bytes=10**4).n_rows == 6
    else:
        with pytest.raises(DataError, match=re.escape(outcome)):
            inspect(lying, kind=DataKind.IMAGE, target="y", max_npz_bytes=10**4)


def _with_entry(data: bytes, name: str, *, file_size: int, crc: int) -> bytes:
    """The archive with one member's uncompressed size and CRC rewritten in its central
    directory entry (what zipfile trusts), its compressed stream left as it is."""
    start = data.index(b"PK\x01\x02")
    while data[start + 46 : start + 46 + len(name)] != name.encode():
        lengths = [int.from_bytes(data[start + k : start + k + 2], "little") for k in (28, 30, 32)]
        start += 46 + sum(lengths)
    patched = bytearray(data)
    patched[start + 16 : start + 20] = crc.to_bytes(4, "little")
    patched[start + 24 : start + 28] = file_size.to_bytes(4, "little")
    return bytes(patched)
