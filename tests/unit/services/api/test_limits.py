"""services/api/limits.py: a body over the API's limit is refused with 413 problem+json
while it streams in, before the app (or Starlette's multipart spooling) holds it all;
a body under the limit reaches the app whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from services.api.app import create_app
from services.api.limits import MULTIPART_SLACK, BodyLimit
from services.settings import ApiSettings

LIMIT = 10_000
CHUNK = 1_000


class Counted:
    """A request body sent in chunks, counting how many the server asked for."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += CHUNK
            yield b"x" * CHUNK


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    app.add_middleware(BodyLimit, max_bytes=LIMIT)
    return app


def post(app: Any, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        # httpx's ASGI transport hands the body over as the app asks for it (the
        # TestClient reads it all first), so `Counted` sees how much was consumed.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return await c.post(path, **kwargs)

    return asyncio.run(go())


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    body = Counted(50 * LIMIT)
    resp = post(echo_app(), "/echo", content=body, headers={"Content-Length": str(50 * LIMIT)})

    assert resp.status_code == 413
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "upload_too_large"
    assert f"of {50 * LIMIT} bytes" in resp.json()["detail"]
    assert f"limit of {LIMIT} bytes" in resp.json()["detail"]
    assert body.sent == 0


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    body = Counted(100 * LIMIT)
    resp = post(echo_app(), "/echo", content=body)

    assert resp.status_code == 413
    assert resp.json()["code"] == "upload_too_large"
    # The chunk that crossed the limit, and not one more.
    assert body.sent == LIMIT + CHUNK


def test_a_body_under_the_limit_reaches_the_app_whole() -> None:
    assert post(echo_app(), "/echo", content=Counted(LIMIT)).json() == {"received": LIMIT}
    assert post(echo_app(), "/echo", content=b"y" * 10).json() == {"received": 10}


@pytest.fixture
def api(tmp_path: Path) -> FastAPI:
    # The refusal comes before routing reads the body, so the app needs no lifespan here.
    settings = ApiSettings(
        kiln_home=tmp_path, redis_url=None, kiln_auth="off", max_upload_bytes=LIMIT
    )
    return create_app(settings)


def test_the_api_refuses_an_upload_over_max_upload_bytes_while_it_streams(api: FastAPI) -> None:
    boundary = "kilnboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()

    body = Counted(20 * (LIMIT + MULTIPART_SLACK))

    async def multipart() -> AsyncIterator[bytes]:
        yield head
        async for chunk in body:
            yield chunk

    resp = post(
        api,
        "/datasets",
        content=multipart(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert resp.status_code == 413, resp.text
    assert resp.json()["code"] == "upload_too_large"
    assert body.sent <= LIMIT + MULTIPART_SLACK + CHUNK
