"""The ASGI layer every predictor request passes: request hooks, one body reader, the infer
fast path, one error writer, and the request metrics.

`POST .../infer` is answered here, outside FastAPI's routing, dependency injection and
exception layers, which cost more than the model on a one-row request
(docs/decisions/0008). Every other route goes on to FastAPI. Both pass the same hooks
first: a hook sees the request's head and raises a domain error to refuse it (the body
limit is one; authentication is the next).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import KilnError
from services.predict import infer, responses, v2
from services.predict.cache import ModelCache
from services.predict.errors import Overloaded, RequestTooLarge
from services.predict.metrics import PredictMetrics
from services.predict.model import OnnxModel
from services.predict.request import RequestHead, RequestHook
from services.problems import retry_after

log = logging.getLogger("kiln.predict")
_INFER_ROUTE = "/v2/models/{name}/infer"
_INFER_VERSION_ROUTE = "/v2/models/{name}/versions/{version}/infer"
_HEADER_LENGTH = infer.HEADER_LENGTH.encode()
# The paths the in-flight bound applies to: health and metrics are always answered.
_MODEL_PATHS = ("/v2/models/", "/predict/")


def body_limit(max_bytes: int) -> RequestHook:
    """Refuse a declared body over ``max_bytes`` before reading it (413); a body without a
    declared length is counted as it streams (`ServingMiddleware`)."""

    def check(head: RequestHead) -> None:
        if head.content_length is not None and head.content_length > max_bytes:
            raise too_large(max_bytes, head.content_length)

    return check


def overloaded(limit: int) -> Overloaded:
    return Overloaded(
        f"this predictor process is serving {limit} requests already "
        "(PREDICT_MAX_IN_FLIGHT); retry after Retry-After seconds or on another replica",
        retry_after_s=1,
    )


def too_large(max_bytes: int, size: int | None = None) -> RequestTooLarge:
    got = f"of {size} bytes " if size is not None else ""
    return RequestTooLarge(
        f"request body {got}exceeds the limit of {max_bytes} bytes (PREDICT_MAX_REQUEST_BYTES)"
    )


class ServingMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: PredictMetrics,
        max_body: int,
        hooks: Sequence[RequestHook],
        cache: Callable[[], ModelCache | None],
        max_in_flight: int = 0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.hooks = [body_limit(max_body), *hooks]
        self.cache = cache
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        metrics.count_in_flight(lambda: self.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        head = RequestHead(scope)
        parts = self._infer_target(head)
        route = _INFER_ROUTE if parts and len(parts) == 1 else _INFER_VERSION_ROUTE
        try:
            for hook in self.hooks:
                hook(head)
        except KilnError as exc:
            status = await _send_error(send, exc)
            self.metrics.observe("", 0, route if parts else "unmatched", status, _since(started))
            return
        if head.content_length is None:
            receive = self._limited(receive)
        bounded = self.max_in_flight and head.path.startswith(_MODEL_PATHS)
        if bounded and self.in_flight >= self.max_in_flight:
            status = await _send_error(send, overloaded(self.max_in_flight))
            self.metrics.observe("", 0, route if parts else "unmatched", status, _since(started))
            return
        self.in_flight += 1
        try:
            cache = self.cache()
            if parts is not None and cache is not None:
                await self._infer(head, receive, send, cache, parts, route, started)
            else:
                await self._other(scope, receive, send, started)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _infer_target(head: RequestHead) -> list[str] | None:
        path = head.path
        if (
            head.method != "POST"
            or not path.startswith("/v2/models/")
            or not path.endswith("/infer")
        ):
            return None
        parts = path[11:-6].split("/")
        if len(parts) == 1 or (len(parts) == 3 and parts[1] == "versions"):
            return parts
        return None

    async def _infer(
        self,
        head: RequestHead,
        receive: Receive,
        send: Send,
        cache: ModelCache,
        parts: list[str],
        route: str,
        started: float,
    ) -> None:
        model: OnnxModel | None = None
        try:
            body = await read_body(receive)
            if body is None:
                return  # the client went away
            ref, version = infer.parse_target(parts[0], parts[2] if len(parts) == 3 else None)
            model = cache.lookup(ref, version) or await cache.get(ref, version)
            header_length = head.header(_HEADER_LENGTH)
            content, content_type, json_length = await infer.run(
                model, body, None if header_length is None else header_length.decode("latin-1")
            )
        except Exception as exc:
            status = await _send_error(send, exc)
        else:
            status = 200
            headers = [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(content)).encode()),
            ]
            if json_length is not None:
                headers.append((_HEADER_LENGTH, str(json_length).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": content})
        name, number = (model.name, model.version) if model is not None else ("", 0)
        self.metrics.observe(name, number, route, status, _since(started))

    async def _other(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            model, version = scope.get(v2.MODEL_SCOPE_KEY, ("", 0))
            self.metrics.observe(model, version, route, status, _since(started))

    def _limited(self, receive: Receive) -> Receive:
        # A body without a declared length (chunked) is counted as it arrives.
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise too_large(self.max_body)
            return message

        return receive_limited


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client went away first."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_error(send: Send, exc: BaseException) -> int:
    if not isinstance(exc, KilnError):
        log.error("request failed", exc_info=exc)
    status, body = responses.error(exc)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    wait = retry_after(exc) if isinstance(exc, KilnError) else None
    if wait is not None:
        headers.append((b"retry-after", wait.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


def _since(started: float) -> float:
    return time.perf_counter() - started
