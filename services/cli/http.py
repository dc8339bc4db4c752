"""What every `kiln` command that talks to a running Kiln shares: the URLs, the HTTP
client, how an error answer is shown, and the consoles."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)

DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_PREDICT = "http://127.0.0.1:8001"
ApiUrl = Annotated[str, typer.Option(envvar="KILN_API_URL", help="The control-plane API.")]
PredictUrl = Annotated[str, typer.Option(envvar="KILN_PREDICT_URL", help="The prediction service.")]


def client(url: str) -> httpx.Client:
    """A client of the API or the predictor, with the API key in $KILN_API_KEY if set."""
    key = os.environ.get("KILN_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return httpx.Client(base_url=url, timeout=60, headers=headers)


def check(resp: httpx.Response) -> Any:
    """The answer's JSON; an error answer is printed with its detail and ends the command."""
    if resp.status_code >= 400:
        try:
            body = resp.json()
            detail = body.get("detail") or body.get("error") or body
        except ValueError:
            detail = resp.text
        err.print(f"[red]{resp.status_code}[/red] {detail}")
        raise typer.Exit(1)
    return resp.json()


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data))
