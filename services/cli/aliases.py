"""`kiln models alias`: promote, roll back, delete, list, and the history of every move."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from services.cli import http
from services.cli.http import DEFAULT_API, ApiUrl
from services.cli.output import Json, console, emit_json, err

app = typer.Typer(help="Aliases: promote, roll back, delete, history.", no_args_is_help=True)
Reason = Annotated[str | None, typer.Option(help="Why; kept in the history.")]


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


def _move(
    api_url: str,
    method: str,
    name: str,
    path: str,
    *,
    json: bool,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """Send one alias change and say where the alias went. The history records the owner
    of the API key (KILN_API_KEY)."""
    with http.client(api_url) as c:
        event = http.check(
            c.request(method, f"/models/{name}/aliases/{path}", json=body, params=params)
        )
    if json:
        emit_json(event)
        return
    src = "nothing" if event["from_version"] is None else f"v{event['from_version']}"
    dst = "deleted" if event["to_version"] is None else f"v{event['to_version']}"
    console.print(f"{name}@{event['alias']}: {src} → {dst}")
    gate = event.get("gate") or {}
    if "p_value" in gate:
        console.print(
            f"gate on {gate['metric']} passed: v{gate['candidate']['version']} "
            f"{gate['candidate']['mean']:.4f} vs v{gate['current']['version']} "
            f"{gate['current']['mean']:.4f}, p = {gate['p_value']:.4g} < {gate['alpha']:g}"
        )


@app.command("set")
def set_(
    name: str,
    alias: str,
    version: int,
    reason: Reason = None,
    gate: Annotated[
        str | None,
        typer.Option(
            help="Move only if VERSION beats the alias's version on this fold metric "
            "(a paired test over the same folds); refused otherwise."
        ),
    ] = None,
    min_delta: Annotated[
        float, typer.Option(help="With --gate: how much better (negative: a margin).")
    ] = 0.0,
    alpha: Annotated[
        float, typer.Option(help="With --gate: the test's significance level.")
    ] = 0.05,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Point ALIAS at VERSION (create or move it: a promotion)."""
    body: dict[str, Any] = {"version": version, "reason": reason}
    if gate is not None:
        body["gate"] = {"metric": gate, "min_delta": min_delta, "alpha": alpha}
    _move(api_url, "PUT", name, alias, json=json, body=body)


@app.command("delete")
def delete(
    name: str,
    alias: str,
    reason: Reason = None,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Delete ALIAS (recorded in the history; `rollback` restores it)."""
    _move(api_url, "DELETE", name, alias, json=json, params={"reason": reason} if reason else {})


@app.command("rollback")
def rollback(
    name: str,
    alias: str,
    to: Annotated[
        str, typer.Option(help="A version number, or `previous` (where it pointed before).")
    ] = "previous",
    reason: Reason = None,
    json: Json = False,
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
    _move(
        api_url,
        "POST",
        name,
        f"{alias}/rollback",
        json=json,
        body={"to": target, "reason": reason},
    )


@app.command("list")
def list_(name: str, json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    with http.client(api_url) as c:
        rows = http.check(c.get(f"/models/{name}/aliases"))
    if json:
        emit_json(rows)
        return
    table = Table("alias", "version", "since")
    for r in rows:
        table.add_row(r["alias"], str(r["version"]), r["updated_at"])
    console.print(table)


@app.command("history")
def history(
    name: str,
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Every alias change of the model, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if alias:
        params["alias"] = alias
    with http.client(api_url) as c:
        events = http.check(c.get(f"/models/{name}/aliases/history", params=params))
    if json:
        emit_json(events)
        return
    console.print(_history_table(events, f"{name}: alias history"))
