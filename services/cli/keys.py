"""`kiln keys`: API keys. `bootstrap` makes the first admin key straight in the registry
database; the others go through the API's admin routes with an admin key."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from core.access import Scope
from services.cli import http
from services.cli.db import unreachable_database
from services.cli.http import DEFAULT_API, ApiUrl
from services.cli.output import Json, console, emit_json

app = typer.Typer(help="API keys: make, list, revoke.", no_args_is_help=True)
Scopes = Annotated[
    list[Scope],
    typer.Option("--scope", help="read, predict, train or admin; repeat for several."),
]
Models = Annotated[
    list[str] | None, typer.Option("--model", help="Limit the key to this model; repeatable.")
]


def _show_token(key: dict[str, Any], token: str) -> None:
    console.print(
        f"key {key['id']} for {key['owner']} ({', '.join(key['scopes'])}). "
        "The token is shown this once:"
    )
    # Plain print: a terminal or a pipe gets the token alone on its line, unstyled.
    typer.echo(token)


@app.command("bootstrap")
def bootstrap(owner: Annotated[str, typer.Option(help="Who holds the key.")]) -> None:
    """Make an admin key in the registry database (DATABASE_URL) directly: the first key,
    before any key can call the API."""
    from registry import keys
    from registry.db import make_engine, make_sessionmaker
    from registry.settings import RegistrySettings

    url = RegistrySettings().database_url
    engine = make_engine(url)
    try:
        with unreachable_database(url), make_sessionmaker(engine)() as session:
            key, token = keys.create_key(
                session, owner=owner, scopes=[Scope.ADMIN], created_by="kiln keys bootstrap"
            )
            session.commit()
            _show_token({"id": key.id, "owner": key.owner, "scopes": key.scopes}, token)
    finally:
        engine.dispose()


@app.command("create")
def create(
    owner: str,
    scope: Scopes,
    model: Models = None,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Make a key for OWNER with the given scopes (needs an admin key in KILN_API_KEY)."""
    with http.client(api_url) as c:
        created = http.check(
            c.post("/keys", json={"owner": owner, "scopes": scope, "models": model})
        )
    if json:
        emit_json(created)
        return
    _show_token(created, created["token"])


@app.command("list")
def list_(json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    with http.client(api_url) as c:
        rows = http.check(c.get("/keys"))
    if json:
        emit_json(rows)
        return
    table = Table("id", "owner", "prefix", "scopes", "models", "created", "revoked")
    for k in rows:
        table.add_row(
            k["id"],
            k["owner"],
            k["prefix"] + "…",
            ", ".join(k["scopes"]),
            ", ".join(k["models"]) if k["models"] is not None else "all",
            k["created_at"],
            k["revoked_at"] or "",
        )
    console.print(table)


@app.command("revoke")
def revoke(key_id: str, json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """Revoke a key: refused everywhere within AUTH_KEY_REFRESH_S."""
    with http.client(api_url) as c:
        key = http.check(c.delete(f"/keys/{key_id}"))
    if json:
        emit_json(key)
        return
    console.print(f"key {key['id']} of {key['owner']} revoked at {key['revoked_at']}")
