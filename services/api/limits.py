"""The API's request-body limit, enforced while the body streams in.

Starlette spools a multipart upload to a temporary file before the route runs, so a
check in the route (or the use case) comes after the bytes landed on disk: a 1 GiB
upload was written out before its 413. This ASGI middleware answers 413 before the body
is read when the declared Content-Length is over the limit, and for a body without one
(chunked) counts the bytes as the app reads them and stops the read as soon as they
pass it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import UploadTooLarge
from services.problems import problem_response, status_of

# Room for what a multipart upload carries besides the file: boundaries, part headers
# and the small form fields (target, name, kind).
MULTIPART_SLACK = 64 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, f"the request body of {declared} bytes")
            return
        seen = 0
        over = False
        started = False

        async def receive_limited() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # The app sees the client go away and stops reading; what it answers
                    # to that is replaced by the 413 below.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def send_limited(message: Message) -> None:
            nonlocal started
            if over:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(scope, receive, send, "the request body")
                return  # the app's own answer to the cut-off body
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_limited, send_limited)
        except Exception:
            if not over:
                raise
            # The app failed on the cut-off body (Starlette's ClientDisconnect); the 413
            # is the answer.
        if over and not started:
            await self._refuse(scope, receive, send, "the request body")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        exc = UploadTooLarge(
            f"{what} is larger than the API's limit of {self.max_bytes} bytes "
            "(MAX_UPLOAD_BYTES and room for the form's other fields); send a smaller file"
        )
        response = problem_response(
            exc.code, exc.message, status_of(exc), headers={"Connection": "close"}
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None
