"""services/predict/serving.py: the ASGI layer every request passes: the request hooks
(the body limit first), and unexpected errors answered as the protocol's JSON."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from core.errors import ErrorKind, KilnError
from services.predict.app import create_app
from services.predict.request import RequestHead
from services.predict.source import Ref
from services.problems import STATUS
from tests.unit.services.predict.models import (
    BIN_V2,
    ROWS,
    F,
    MemorySource,
    infer_body,
    make_settings,
    metric_sample,
    outputs_of,
    rows_payload,
)


class NoKey(KilnError):
    """What an authentication hook raises (the next issue's): no key, or a wrong one."""

    kind = ErrorKind.FORBIDDEN
    code = "no_key"


def test_request_over_the_limit_is_413(tmp_path: Path, source: MemorySource) -> None:
    app = create_app(make_settings(tmp_path, predict_max_request_bytes=100), source=source)
    with TestClient(app) as c:
        big = json.dumps(infer_body(np.zeros((10, F), np.float32))).encode()
        response = c.post("/v2/models/cancer/infer", content=big)
        assert response.status_code == 413
        assert response.json() == {
            "error": f"request body of {len(big)} bytes exceeds the limit of 100 bytes "
            "(PREDICT_MAX_REQUEST_BYTES)"
        }

        chunked = c.post("/v2/models/cancer/infer", content=iter([big[:60], big[60:]]))
        assert chunked.status_code == 413
        assert chunked.json() == {
            "error": "request body exceeds the limit of 100 bytes (PREDICT_MAX_REQUEST_BYTES)"
        }

        small = json.dumps(infer_body([[0, 0, 0, 0]])).encode()
        assert len(small) <= 100
        assert c.post("/v2/models/cancer/infer", content=small).status_code == 200


class FailingSource(MemorySource):
    def resolve(self, ref: Ref) -> int:
        raise RuntimeError(f"registry database is down, cannot look up {ref}")


def test_unexpected_errors_are_json_500(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), source=FailingSource())
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error"}
        labels = {"route": "/v2/models/{name}/infer", "status": "500"}
        assert metric_sample(c.get("/metrics").text, "kiln_predict_requests_total", labels) == 1


def test_a_hook_refuses_requests_on_the_infer_fast_path_and_the_fastapi_routes(
    tmp_path: Path, source: MemorySource
) -> None:
    seen: list[RequestHead] = []

    def require_key(head: RequestHead) -> None:
        seen.append(head)
        if head.header(b"x-test-key") != b"ok":
            raise NoKey("no key")

    app = create_app(make_settings(tmp_path), source=source, hooks=[require_key])
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v2/models/cancer/infer", infer_body(ROWS)),  # the ASGI fast path
        ("GET", "/v2/models/cancer", None),  # FastAPI routes
        ("POST", "/predict/cancer", rows_payload(ROWS)),
    ]
    assert STATUS[NoKey.kind] == 403
    with TestClient(app) as c:
        for method, path, body in calls:
            for headers in ({}, {"x-test-key": "wrong"}):
                refused = c.request(method, path, json=body, headers=headers)
                assert refused.status_code == 403, (method, path, refused.text)
                assert refused.json() == {"error": "no key"}
        # Refused before anything was looked up or loaded.
        assert source.loads == []
        assert app.state.model_cache.loaded() == []

        key = {"x-test-key": "ok"}
        infer = c.post("/v2/models/cancer/infer", json=infer_body(ROWS), headers=key)
        assert infer.status_code == 200, infer.text
        np.testing.assert_allclose(outputs_of(infer), BIN_V2.expected(ROWS), atol=1e-5)
        meta = c.get("/v2/models/cancer", headers=key)
        assert meta.status_code == 200, meta.text
        assert meta.json()["versions"] == ["2"]
        predicted = c.post("/predict/cancer", json=rows_payload(ROWS), headers=key)
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["model_version"] == 2

    assert [(h.method, h.path) for h in seen] == [
        (method, path) for method, path, _ in calls for _ in range(2)
    ] + [(method, path) for method, path, _ in calls]
    # What a hook sees: lower-case header names, and the declared length of a body.
    assert all(name == name.lower() for head in seen for name, _ in head.headers)
    assert seen[-1].header(b"x-test-key") == b"ok"
    assert seen[-1].content_length == int(predicted.request.headers["content-length"]) > 0


class SlowSource(MemorySource):
    """Loads block until released: requests stay in flight while the test looks."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def load(self, name: str, version: int) -> Any:
        self.release.wait(10)
        return super().load(name, version)


def test_past_its_in_flight_limit_the_predictor_answers_503_with_retry_after(
    tmp_path: Path,
) -> None:
    asyncio.run(_in_flight_limit(tmp_path))


async def _in_flight_limit(tmp_path: Path) -> None:
    source = SlowSource()
    source.add("cancer", 1, BIN_V2.onnx, BIN_V2.signature)
    app = create_app(make_settings(tmp_path, predict_max_in_flight=2), source=source)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://predictor") as c,
    ):
        url = "/v2/models/cancer/versions/1/infer"
        held = [asyncio.create_task(c.post(url, json=infer_body(ROWS))) for _ in range(2)]
        await asyncio.sleep(0.2)  # both wait for the model's load
        refused = await c.post(url, json=infer_body(ROWS))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "PREDICT_MAX_IN_FLIGHT" in refused.json()["error"]
        assert (await c.get("/v2/health/live")).status_code == 200  # probes still answered
        source.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert (await c.post(url, json=infer_body(ROWS))).status_code == 200
