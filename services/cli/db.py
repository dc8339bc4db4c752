"""`kiln db`: the registry database."""

from __future__ import annotations

import typer

from services.cli.http import console

app = typer.Typer(help="The registry database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Bring the registry schema to the newest revision (Alembic)."""
    from registry.migrate import upgrade as migrate
    from registry.settings import RegistrySettings

    settings = RegistrySettings()
    migrate(settings.database_url)
    console.print(f"registry at {redact(settings.database_url)} is up to date")


def redact(url: str) -> str:
    """The URL without its credentials, to print."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url
