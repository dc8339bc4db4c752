"""Bad input on every kind of route gets a 4xx problem+json that names what was wrong, on
SQLite and PostgreSQL alike: page bounds, version numbers past the registry's 32-bit
columns, NUL characters (which PostgreSQL cannot store), bodies that are not JSON,
multipart bodies that cannot be parsed, and NPZ uploads whose headers lie or that
unpack past the limit."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.settings import ApiSettings
from tests.factories import row_counts

PROBLEM = "application/problem+json"


def problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.parametrize("path", ["/datasets", "/jobs", "/models"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999", "offset"),
    ],
)
def test_page_bounds_are_422_naming_the_parameter(
    client: TestClient, path: str, query: str, field: str
) -> None:
    body = problem(client.get(f"{path}?{query}"), 422)
    assert body["errors"][0]["loc"] == ["query", field]


def test_the_page_cap_is_in_the_openapi_document(client: TestClient) -> None:
    params = client.get("/openapi.json").json()["paths"]["/models"]["get"]["parameters"]
    limit = next(p for p in params if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000
    assert limit["schema"]["minimum"] == 1


@pytest.mark.parametrize("version", ["0", "2147483648", "99999999999999999999"])
def test_version_numbers_out_of_range_are_422(
    client: TestClient, model: dict[str, Any], version: str
) -> None:
    body = problem(client.get(f"/models/{model['name']}/versions/{version}"), 422)
    assert body["errors"][0]["loc"] == ["path", "version"]
    assert "2147483647" in body["detail"] or "greater than or equal to 1" in body["detail"]


def test_alias_and_compare_version_numbers_out_of_range_are_422(
    client: TestClient, model: dict[str, Any]
) -> None:
    name = model["name"]
    body = problem(client.put(f"/models/{name}/aliases/prod", json={"version": 2**31}), 422)
    assert body["errors"][0]["loc"] == ["body", "version"]
    body = problem(client.post(f"/models/{name}/aliases/prod/rollback", json={"to": 2**40}), 422)
    assert body["errors"][0]["loc"][:2] == ["body", "to"]
    body = problem(client.get(f"/models/{name}/compare?versions=1,99999999999"), 422)
    assert "from 1 to 2147483647" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "json", "loc"),
    [
        ("put", "/models/{name}/tags/k", {"value": "a\x00b"}, ["body", "value"]),
        ("patch", "/models/{name}", {"description": "\x00"}, ["body", "description"]),
        ("put", "/models/{name}/versions/1/tags/k", {"value": "\x00"}, ["body", "value"]),
        (
            "put",
            "/models/{name}/aliases/prod",
            {"version": 1, "reason": "x\x00"},
            ["body", "reason"],
        ),
        ("get", "/models/{name}/versions?tag=a%00b", None, ["query", "tag", 0]),
        ("get", "/models/a%00b", None, ["path", "name"]),
        ("put", "/models/{name}/tags/k%00", {"value": "v"}, ["path", "key"]),
        ("get", "/jobs/a%00b", None, ["path", "job_id"]),
    ],
)
def test_a_nul_character_is_422_naming_the_field(
    client: TestClient,
    model: dict[str, Any],
    method: str,
    path: str,
    json: dict[str, Any] | None,
    loc: list[Any],
) -> None:
    resp = client.request(method, path.format(name=model["name"]), json=json)
    body = problem(resp, 422)
    assert body["errors"][0]["loc"] == loc
    assert "NUL" in body["errors"][0]["msg"]


def test_a_body_that_is_not_json_is_400_problem_json(
    client: TestClient, model: dict[str, Any]
) -> None:
    resp = client.put(
        f"/models/{model['name']}/tags/k",
        content=b'{"value": ',
        headers={"Content-Type": "application/json"},
    )
    body = problem(resp, 400)
    assert body["code"] == "body_not_json"
    assert "not valid JSON" in body["detail"]
    documented = client.get("/openapi.json").json()["paths"]["/models/{name}/tags/{key}"]
    assert "400" in documented["put"]["responses"]


def test_a_multipart_body_that_cannot_be_parsed_is_400_problem_json(client: TestClient) -> None:
    resp = client.post(
        "/datasets",
        content=b"--b\r\nnot a header line\r\n\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    body = problem(resp, 400)
    assert body["code"] == "body_unreadable"
    assert "multipart" in body["detail"]


def test_an_unknown_route_is_404_problem_json(client: TestClient) -> None:
    assert problem(client.get("/nowhere"), 404)["code"] == "route_not_found"


def upload_npz(client: TestClient, data: bytes) -> Any:
    return client.post(
        "/datasets", files={"file": ("x.npz", io.BytesIO(data), "application/octet-stream")}
    )


def npz_member(array: np.ndarray, *, shape: tuple[int, ...] | None = None) -> bytes:
    """An .npy file whose header may declare another shape than the data it holds."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out,
        {
            "descr": np.lib.format.dtype_to_descr(array.dtype),
            "fortran_order": False,
            "shape": shape or array.shape,
        },
    )
    return out.getvalue() + array.tobytes()


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return out.getvalue()


def zip_bomb(n_bytes: int) -> bytes:
    """An honest NPZ of ``n_bytes`` zeros in x, deflated, written a megabyte at a time."""
    out = io.BytesIO()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (n_bytes // 4096, 64, 64)}
    )
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(n_bytes // 2**20):
                f.write(bytes(2**20))
        z.writestr("y.npy", npz_member(np.zeros(n_bytes // 4096, np.int64)))
    return out.getvalue()


@pytest.fixture
def small_limit(tmp_path: Path, own_db: str) -> Iterator[TestClient]:
    """The API with a 1 MB upload limit: NPZ arrays may unpack to 4 MB."""
    settings = ApiSettings(
        kiln_home=tmp_path,
        database_url=own_db,
        redis_url=None,
        job_sweep_interval_s=3600,
        kiln_auth="off",
        max_upload_bytes=2**20,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_an_npz_whose_header_claims_more_than_it_holds_is_422_and_stores_nothing(
    client: TestClient, db_url: str
) -> None:
    x = np.zeros((4, 2, 2), np.uint8)
    lying = zipped(
        {"x": npz_member(x, shape=(10**6, 10**6, 10**6)), "y": npz_member(np.zeros(4, np.int64))}
    )
    before = row_counts(db_url)
    body = problem(upload_npz(client, lying), 422)
    assert body["code"] == "images_invalid"
    assert "declares shape [1000000, 1000000, 1000000]" in body["detail"]
    assert row_counts(db_url) == before


def test_an_npz_that_unpacks_past_the_limit_is_413_before_it_is_decompressed(
    small_limit: TestClient, own_db: str
) -> None:
    bomb = zip_bomb(64 * 2**20)  # 64 MiB of zeros in well under the 1 MB upload limit
    assert len(bomb) < 2**20
    before = row_counts(own_db)
    body = problem(upload_npz(small_limit, bomb), 413)
    assert body["code"] == "data_too_large"
    assert f"take {64 * 2**20 + 128 + 16384 * 8 + 128} bytes unpacked" in body["detail"]
    assert f"at most {4 * 2**20} are accepted" in body["detail"]
    assert row_counts(own_db) == before
