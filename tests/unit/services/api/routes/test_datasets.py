"""services/api/routes/datasets.py over HTTP on real SQLite and PostgreSQL: uploads of
CSV tables and NPZ images recorded with their shape, dtypes, classes and hash; bad files
refused with a problem body that says what was expected, and nothing stored."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.factories import row_counts

CSV = b"a,b,label\n1.0,2.0,0\n2.0,1.0,1\n3.0,0.5,0\n4.0,2.5,1\n5.0,1.5,0\n6.0,0.1,1\n"


def upload(client: TestClient, data: bytes, target: str = "label", ctype: str = "text/csv") -> Any:
    return client.post(
        "/datasets", files={"file": ("t.csv", io.BytesIO(data), ctype)}, data={"target": target}
    )


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def upload_npz(client: TestClient, data: bytes, **form: str) -> Any:
    return client.post(
        "/datasets",
        files={"file": ("x.npz", io.BytesIO(data), "application/octet-stream")},
        data=form,
    )


def test_upload_records_shape_dtypes_and_hash(client: TestClient) -> None:
    resp = upload(client, CSV)
    assert resp.status_code in (200, 201), resp.text
    body = resp.json()
    assert body["n_rows"] == 6
    assert body["n_columns"] == 3
    assert body["columns"][0] == {"name": "a", "dtype": "float64"}
    assert body["class_counts"] == {"0": 3, "1": 3}

    assert body["sha256"] == hashlib.sha256(CSV).hexdigest()
    again = upload(client, CSV)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("data", "target", "ctype", "status", "needle"),
    [
        (b"", "label", "text/csv", 422, "empty"),
        (b"a,b,label\n", "label", "text/csv", 422, "0 data rows"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "label", "text/csv", 422, "not CSV"),
        (CSV, "nope", "text/csv", 422, "target column 'nope' is not in the CSV"),
        (b"a,b,label\nx,2,0\ny,3,1\n", "label", "text/csv", 422, "feature columns must be numeric"),
        (b"a,b,label\n1,,0\n2,3,1\n", "label", "text/csv", 422, "missing values"),
        (CSV, "label", "image/png", 415, "expected text/csv"),
    ],
    ids=["empty", "header-only", "binary", "no-target", "non-numeric", "missing", "media-type"],
)
def test_bad_uploads_are_refused_and_change_nothing(
    client: TestClient, db_url: str, data: bytes, target: str, ctype: str, status: int, needle: str
) -> None:
    before = row_counts(db_url)
    resp = upload(client, data, target, ctype)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert needle in resp.json()["detail"]
    assert row_counts(db_url) == before


def test_builtin_datasets_are_listed(client: TestClient) -> None:
    names = {d["name"] for d in client.get("/datasets/builtin").json()}
    assert {"breast_cancer", "iris", "wine", "digits", "diabetes"} <= names


def test_npz_upload_records_kind_shape_and_classes(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(12, 5, 4), dtype=np.uint8)
    y = np.array([0, 1, 2] * 4)
    resp = upload_npz(client, npz(x=x, y=y))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["kind"] == "image"
    assert body["shape"] == [12, 5, 4, 1]
    assert body["target"] == "y"
    assert body["class_counts"] == {"0": 4, "1": 4, "2": 4}
    assert upload_npz(client, npz(x=x, y=y)).status_code == 200


def test_csv_upload_records_table_kind_and_shape(client: TestClient) -> None:
    csv = b"a,b,label\n1,2,0\n2,1,1\n3,0,0\n4,2,1\n"
    resp = client.post(
        "/datasets",
        files={"file": ("t.csv", io.BytesIO(csv), "text/csv")},
        data={"target": "label"},
    )
    assert resp.status_code in (200, 201), resp.text
    assert resp.json()["kind"] == "table"
    assert resp.json()["shape"] == [4, 2]


GOOD_X = np.zeros((6, 4, 4), dtype=np.float32)


GOOD_Y = np.arange(6) % 2


BAD_IMAGES = [
    (b"a,b\n1,2\n", {"kind": "image"}, "not an NPZ"),
    (npz(images=GOOD_X, y=GOOD_Y), {}, "no array 'x'"),
    (npz(x=GOOD_X), {}, "no array 'y'"),
    (npz(x=GOOD_X, y=GOOD_Y[:5]), {}, "x holds 6 images but y holds 5 labels"),
    (npz(x=np.zeros((6, 16)), y=GOOD_Y), {}, "expected images (N, H, W) or (N, H, W, C)"),
    (npz(x=np.zeros((6, 4, 4, 9)), y=GOOD_Y), {}, "channels"),
    (npz(x=np.full((6, 4, 4), "a"), y=GOOD_Y), {}, "expected numbers"),
    (npz(x=np.where(np.eye(4) > 0, np.nan, 0.0)[None].repeat(6, 0), y=GOOD_Y), {}, "NaN"),
    (npz(x=GOOD_X, y=GOOD_Y.reshape(3, 2)), {}, "expected one label per image"),
]


@pytest.mark.parametrize(("data", "form", "needle"), BAD_IMAGES)
def test_bad_image_uploads_are_refused_and_change_nothing(
    client: TestClient, db_url: str, data: bytes, form: dict[str, str], needle: str
) -> None:
    before = row_counts(db_url)
    resp = upload_npz(client, data, **form)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert needle in resp.json()["detail"]
    assert row_counts(db_url) == before


def test_a_table_without_a_target_is_refused(client: TestClient) -> None:
    resp = client.post(
        "/datasets", files={"file": ("t.csv", io.BytesIO(b"a,b\n1,2\n"), "text/csv")}
    )
    assert resp.status_code == 422
    assert "needs the target" in resp.json()["detail"]
