"""`kiln db`: the registry database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy.exc import OperationalError

from services.cli.errors import CliError, ExitCode
from services.cli.output import console, plain

app = typer.Typer(help="The registry database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Bring the registry schema to the newest revision (Alembic)."""
    from registry.migrate import upgrade as migrate
    from registry.settings import RegistrySettings

    settings = RegistrySettings()
    with unreachable_database(settings.database_url):
        migrate(settings.database_url)
    console.print(f"registry at {redact(settings.database_url)} is up to date")


@contextmanager
def unreachable_database(url: str) -> Iterator[None]:
    """A registry database that cannot be reached ends the command with exit code 3 and
    one line naming it (without its password) and DATABASE_URL."""
    try:
        yield
    except OperationalError as exc:
        text = str(exc.orig or exc).strip()
        reason = plain(text.splitlines()[0]) if text else type(exc).__name__
        raise CliError(
            f"the registry database at {redact(url)} cannot be reached ({reason}); "
            "set DATABASE_URL",
            code=ExitCode.UNREACHABLE,
        ) from None


def redact(url: str) -> str:
    """The URL without its credentials, to print."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url
