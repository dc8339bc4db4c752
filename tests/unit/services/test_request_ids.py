"""services/request_ids.py: every API and predictor answer carries an x-request-id, a sane
one the client sent or one made here, and every line logged while the request runs
carries the same id (core.logs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app as create_api
from services.predict import infer
from services.predict.app import create_app as create_predictor
from services.predict.request import RequestHead
from services.request_ids import client_request_id, new_request_id
from tests.conftest import api_settings
from tests.logs import configured
from tests.unit.services.predict.models import ROWS, infer_body, make_settings, make_source


@pytest.fixture
def api(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    app = create_api(api_settings(tmp_path, sqlite_url, kiln_auth="off"))

    @app.get("/_test/log", tags=["test"])
    async def log_a_line() -> dict[str, str]:
        logging.getLogger("kiln.api").info("a line of the request")
        return {}

    with TestClient(app) as client:
        yield client


def _hook(head: RequestHead) -> None:
    # A hook runs inside ServingMiddleware, on the infer fast path too.
    logging.getLogger("kiln.predict").info("a line of %s", head.path)
    if head.path == "/v2/models/hooked/infer":
        raise RuntimeError("a bug in a hook")


@pytest.fixture
def predictor(tmp_path: Path) -> Iterator[TestClient]:
    app = create_predictor(make_settings(tmp_path), source=make_source(), hooks=[_hook])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"ab12", True),
        (b"7d3c0e1a-5b2f-4c3e-9f7a-1b2c3d4e5f60", True),
        (b"trace:span.1_x-y", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"", False),
        (b"has space", False),
        (b"line\nbreak", False),
        (b'quote"', False),
        ("déjà".encode(), False),
    ],
)
def test_only_a_sane_client_id_is_kept(sent: bytes, kept: bool) -> None:
    headers = [(b"accept", b"*/*"), (b"x-request-id", sent)]
    assert client_request_id(headers) == (sent if kept else None)


def test_made_ids_differ_and_are_sane() -> None:
    made = {new_request_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(client_request_id([(b"x-request-id", rid.encode())]) for rid in made)


def test_the_api_answers_with_an_id_and_its_lines_carry_it(api: TestClient) -> None:
    with configured("api", log_format="json") as captured:
        made = api.get("/_test/log")
        echoed = api.get("/_test/log", headers={"X-Request-ID": "client-1"})
        replaced = api.get("/_test/log", headers={"X-Request-ID": "no good\x01"})
        missing = api.get("/nowhere", headers={"X-Request-ID": "client-2"})
    assert made.status_code == echoed.status_code == replaced.status_code == 200
    assert echoed.headers["x-request-id"] == "client-1"
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "client-2"
    ids = [made.headers["x-request-id"], "client-1", replaced.headers["x-request-id"]]
    assert len(set(ids)) == 3
    assert "no good" not in ids[2]
    lines = [line for line in captured.lines() if line["message"] == "a line of the request"]
    assert [line["request_id"] for line in lines] == ids
    assert {line["process"] for line in lines} == {"api"}


def test_the_predictor_answers_with_an_id_and_its_lines_carry_it(
    predictor: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def bug(*_args: object) -> None:
        raise RuntimeError("a bug in the infer path")

    with configured("predict", log_format="json") as captured:
        ok = predictor.post("/v2/models/iris/infer", json=infer_body(ROWS))
        echoed = predictor.post(
            "/v2/models/iris/infer", json=infer_body(ROWS), headers={"X-Request-ID": "c-7"}
        )
        with monkeypatch.context() as patch:
            patch.setattr(infer, "run", bug)
            broken = predictor.post(
                "/v2/models/iris/infer", json=infer_body(ROWS), headers={"X-Request-ID": "c-8"}
            )
        hooked = predictor.post("/v2/models/hooked/infer", headers={"X-Request-ID": "c-9"})
        routed = predictor.get("/v2/models/nope", headers={"X-Request-ID": "c'9"})
    assert ok.status_code == echoed.status_code == 200
    assert ok.headers["x-request-id"]
    assert ok.headers["x-request-id"] != "c-7"
    assert echoed.headers["x-request-id"] == "c-7"
    # ServingMiddleware's own error answer, and Starlette's 500 for what escapes it.
    assert (broken.status_code, broken.headers["x-request-id"]) == (500, "c-8")
    assert (hooked.status_code, hooked.headers["x-request-id"]) == (500, "c-9")
    # FastAPI's routes (not the infer fast path) pass it too; a bad id is replaced.
    assert routed.status_code == 404
    assert routed.headers["x-request-id"] not in ("", "c'9")
    lines = captured.lines()
    # ServingMiddleware's own error line.
    (failed,) = [line for line in lines if line["message"] == "request failed"]
    assert failed["request_id"] == "c-8"
    assert failed["process"] == "predict"
    assert "RuntimeError: a bug in the infer path" in failed["exc_info"]
    hooked_lines = [line["request_id"] for line in lines if line["message"].startswith("a line")]
    assert hooked_lines == [
        ok.headers["x-request-id"],
        "c-7",
        "c-8",
        "c-9",
        routed.headers["x-request-id"],
    ]
