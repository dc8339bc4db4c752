"""The request id of every API and predictor request: the client's ``X-Request-ID`` when it
is a sane token, else one made here; set in `core.logs.request_id` for every line logged
while the request runs (uvicorn's access line too), and sent back as ``x-request-id``.

Pure ASGI and cheap, because every predictor request passes it (docs/decisions/0027): an
id made here is a random prefix of this process and a counter, not a UUID per request.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logs import request_id

_HEADER = b"x-request-id"
# What a client's id may be: no spaces, quotes or control characters to forge log lines.
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


_prefix = ""
_counter = itertools.count(1)


def _renew() -> None:
    # A forked process (gunicorn's preload, a test) must not repeat its parent's ids.
    global _prefix, _counter
    _prefix, _counter = secrets.token_hex(4) + "-", itertools.count(1)


_renew()
os.register_at_fork(after_in_child=_renew)


def new_request_id() -> str:
    """An id unique to this process's life: ``<8 random hex>-<counter in hex>``."""
    return _prefix + format(next(_counter), "x")


def client_request_id(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The client's ``X-Request-ID`` when it is 1 to 128 of ``[A-Za-z0-9._:-]``."""
    for name, value in headers:
        if name == _HEADER:
            return value if _SANE.fullmatch(value) else None
    return None


def install(app: Starlette) -> None:
    """Put `RequestIds` around the whole of ``app``: outside Starlette's
    ServerErrorMiddleware too, which `add_middleware` cannot reach, so that a 500 answer
    carries its id as well, and outside any middleware added after this call."""
    build = app.build_middleware_stack

    def build_with_ids() -> ASGIApp:
        return RequestIds(build())

    # Starlette builds the stack once, on the first call, with this method.
    app.build_middleware_stack = build_with_ids  # type: ignore[method-assign]


class RequestIds:
    """Sets the request id for the request and adds ``x-request-id`` to the answer.

    An exception leaves the id set: the server logs its traceback after the app returns,
    in the same task, and that line must carry it too; the task ends with the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = client_request_id(scope["headers"])
        if value is None:
            rid = _prefix + format(next(_counter), "x")  # new_request_id(), inlined
            value = rid.encode()
        else:
            rid = value.decode()
        header = (_HEADER, value)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list: a response's own header list may be shared (a cached answer).
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = request_id.set(rid)
        await self.app(scope, receive, send_with_id)
        request_id.reset(token)
