"""Where the `kiln` commands write: tables and text on stdout, errors and live progress on
stderr, and with `--json` the API's answer alone on stdout."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err = Console(stderr=True, highlight=False)

Json = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the API's JSON answer as received, and nothing else on stdout."
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Print only the new id on stdout, for `id=$(kiln ...)` in scripts."
    ),
]


def emit_json(data: Any) -> None:
    """``data`` as one line of plain JSON on stdout: no colour, no markup, for jq and scripts."""
    typer.echo(json.dumps(data, ensure_ascii=False))


def print_json(data: Any) -> None:
    """``data`` indented and, on a terminal, coloured."""
    console.print_json(json.dumps(data))


def error_line(text: str) -> None:
    """One red line on stderr. ``text`` is shown as is (a server's message may hold
    brackets that rich would read as markup), and never wrapped, so that a script reading
    stderr gets it in one piece."""
    err.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)


def plain(text: str) -> str:
    """A server's or a file's text on one line, at most 300 characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= 300 else flat[:299] + "…"


def when(timestamp: str | None) -> str:
    """An API time (ISO 8601, UTC) to the second: 2026-11-03 10:11:12."""
    if not timestamp:
        return ""
    return timestamp.replace("T", " ")[:19]


def number(value: object, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return f"{value:.{digits}f}"
