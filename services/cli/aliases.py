"""`kiln models alias`: promote, roll back, delete, list, and the history of every move."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from services.cli import http
from services.cli.http import DEFAULT_API, Actor, ApiUrl, console, err

app = typer.Typer(help="Aliases: promote, roll back, delete, history.", no_args_is_help=True)


def _history_table(events: list[dict[str, Any]], title: str) -> Table:
    table = Table("at", "alias", "from", "to", "actor", "reason", title=title)
    for e in events:
        table.add_row(
            e["at"],
            e["alias"],
            "-" if e["from_version"] is None else str(e["from_version"]),
            "(deleted)" if e["to_version"] is None else str(e["to_version"]),
            e["actor"] or "",
            e["reason"] or "",
        )
    return table


def _moved(event: dict[str, Any], name: str) -> None:
    src = "nothing" if event["from_version"] is None else f"v{event['from_version']}"
    dst = "deleted" if event["to_version"] is None else f"v{event['to_version']}"
    console.print(f"{name}@{event['alias']}: {src} → {dst}")


@app.command("set")
def set_(
    name: str,
    alias: str,
    version: int,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the history.")] = None,
    actor: Actor = "",
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Point ALIAS at VERSION (create or move it: a promotion)."""
    with http.client(api_url) as c:
        event = http.check(
            c.put(
                f"/models/{name}/aliases/{alias}",
                json={"version": version, "reason": reason},
                headers=http.actor_header(actor),
            )
        )
    _moved(event, name)


@app.command("delete")
def delete(
    name: str,
    alias: str,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the history.")] = None,
    actor: Actor = "",
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Delete ALIAS (recorded in the history; `rollback` restores it)."""
    params = {"reason": reason} if reason else {}
    with http.client(api_url) as c:
        event = http.check(
            c.delete(
                f"/models/{name}/aliases/{alias}",
                params=params,
                headers=http.actor_header(actor),
            )
        )
    _moved(event, name)


@app.command("rollback")
def rollback(
    name: str,
    alias: str,
    to: Annotated[
        str, typer.Option(help="A version number, or `previous` (where it pointed before).")
    ] = "previous",
    reason: Annotated[str | None, typer.Option(help="Why; kept in the history.")] = None,
    actor: Actor = "",
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Move ALIAS back to the previous version, or to the one named with --to."""
    target: int | str = to
    if to != "previous":
        try:
            target = int(to)
        except ValueError:
            err.print(f"[red]--to {to!r}[/red]: expected a version number or 'previous'")
            raise typer.Exit(2) from None
    with http.client(api_url) as c:
        event = http.check(
            c.post(
                f"/models/{name}/aliases/{alias}/rollback",
                json={"to": target, "reason": reason},
                headers=http.actor_header(actor),
            )
        )
    _moved(event, name)


@app.command("list")
def list_(name: str, api_url: ApiUrl = DEFAULT_API) -> None:
    with http.client(api_url) as c:
        rows = http.check(c.get(f"/models/{name}/aliases"))
    table = Table("alias", "version", "since")
    for r in rows:
        table.add_row(r["alias"], str(r["version"]), r["updated_at"])
    console.print(table)


@app.command("history")
def history(
    name: str,
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    limit: int = 100,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Every alias change of the model, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if alias:
        params["alias"] = alias
    with http.client(api_url) as c:
        events = http.check(c.get(f"/models/{name}/aliases/history", params=params))
    console.print(_history_table(events, f"{name}: alias history"))
