"""What every `kiln` command that talks to a running Kiln shares: the URLs, the HTTP
client, and how an error answer or no answer at all is told (services/cli/errors.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import typer

from services.cli.errors import CliError, ExitCode, unreachable
from services.cli.output import console, err, plain, print_json

__all__ = [
    "API",
    "DEFAULT_API",
    "DEFAULT_PREDICT",
    "PREDICT",
    "ApiUrl",
    "PredictUrl",
    "Service",
    "check",
    "client",
    "console",
    "err",
    "print_json",
    "refused",
]

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_PREDICT = "http://127.0.0.1:8001"
ApiUrl = Annotated[str, typer.Option(envvar="KILN_API_URL", help="The control-plane API.")]
PredictUrl = Annotated[str, typer.Option(envvar="KILN_PREDICT_URL", help="The prediction service.")]


@dataclass(frozen=True)
class Service:
    name: str
    setting: str


API = Service("the Kiln API", "--api-url or KILN_API_URL")
PREDICT = Service("the Kiln prediction service", "--predict-url or KILN_PREDICT_URL")


@contextmanager
def client(url: str, service: Service = API) -> Iterator[httpx.Client]:
    """A client of the API (or the predictor) at ``url``, with the API key in $KILN_API_KEY
    if set. A request in the block that gets no answer (refused, unresolvable, timed out)
    ends the command with exit code 3 and one line naming ``url`` and the setting."""
    key = os.environ.get("KILN_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else None
    try:
        c = httpx.Client(base_url=url, timeout=60, headers=headers)
        scheme = c.base_url.scheme
    except httpx.InvalidURL as exc:
        scheme, why = "", str(exc)
    else:
        why = "expected http://host:port or https://…"
    if scheme not in ("http", "https"):
        raise CliError(
            f"{url!r} is not a URL of {service.name} ({why}); set {service.setting}",
            code=ExitCode.UNREACHABLE,
        )
    with c:
        try:
            yield c
        except httpx.TransportError as exc:
            raise unreachable(
                exc, url=f"{service.name} at {url}", setting=service.setting
            ) from None


def check(resp: httpx.Response) -> Any:
    """The answer's JSON; an error answer ends the command (exit code 1) with its status and
    the problem's detail, and a 422's field errors one a line."""
    if resp.is_error:
        raise refused(resp)
    try:
        return resp.json()
    except ValueError:
        kind = resp.headers.get("content-type") or "no content type"
        raise CliError(
            f"{resp.request.url} answered {resp.status_code} with {kind}, not JSON: is that "
            "address a Kiln service? (--api-url / KILN_API_URL, --predict-url / KILN_PREDICT_URL)"
        ) from None


def refused(resp: httpx.Response) -> CliError:
    """The error for an error answer: `401 Unauthorized: <detail>` and a hint where one helps."""
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    detail: Any = None
    fields: list[Any] = []
    if isinstance(body, dict):
        # The API's problem+json (detail, errors[]); the predictor's {"error": ...};
        # FastAPI's own 422 (a list under detail).
        detail = body.get("detail") or body.get("error") or body.get("title")
        fields = body.get("errors") or []
        if isinstance(detail, list):
            fields, detail = detail, None
    if fields:
        detail = body.get("title") or "the request is invalid"
    elif detail is None:
        detail = resp.text or "(no body)"
    message = f"{resp.status_code} {resp.reason_phrase}: {plain(str(detail))}"
    if resp.status_code == 401:
        message += " (the CLI sends the key in KILN_API_KEY)"
    if resp.headers.get("retry-after"):
        message += f" (retry after {resp.headers['retry-after']} s)"
    return CliError(message, details=[_field(f) for f in fields])


def _field(error: Any) -> str:
    """One field error of a 422: `spec.layers.0.units: Input should be greater than 0`."""
    if not isinstance(error, dict):
        return plain(str(error))
    loc = [str(p) for p in error.get("loc") or []]
    if loc[:1] == ["body"]:
        loc = loc[1:]  # the CLI wrote the body; the field's path inside it is what helps
    return f"{'.'.join(loc) or '(request)'}: {plain(str(error.get('msg', '')))}"
