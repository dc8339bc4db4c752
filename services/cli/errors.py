"""How a `kiln` command ends when something is wrong: one line on stderr and an exit code
a script can test, never a traceback for an unreachable server, a refusal or a bad file.

Commands raise `CliError` (services/cli/http.py and files.py make them); `KilnGroup`, the
click group class of the `kiln` app, turns every one into its line and its exit code in
one place, around the whole command tree.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import httpx
import typer
from typer.core import TyperGroup

from services.cli.output import err, error_line, plain


class ExitCode(IntEnum):
    OK = 0
    # The server answered with an error (4xx, 5xx, or not what Kiln answers), or the job
    # that was followed or shown failed or was cancelled.
    REFUSED = 1
    # Click's own: an unknown option, a missing argument, a value of the wrong type.
    USAGE = 2
    # No answer: the connection was refused, the name did not resolve, it timed out.
    UNREACHABLE = 3
    # A file on this machine: missing, unreadable, not JSON, or not writable.
    LOCAL_FILE = 4
    INTERRUPTED = 130


EXIT_CODES = (
    "Exit codes: 0 done; 1 the server refused (an error answer) or the job failed or was "
    "cancelled; 2 usage error; 3 the server cannot be reached (set --api-url / KILN_API_URL, "
    "--predict-url / KILN_PREDICT_URL); 4 a local file is missing, unreadable or not JSON; "
    "130 interrupted."
)


class CliError(Exception):
    """What went wrong, in one line (``message``) and optional ``details`` lines (a 422's
    field errors), with the exit code the command ends with."""

    def __init__(
        self, message: str, *, code: ExitCode = ExitCode.REFUSED, details: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or []

    def show(self) -> None:
        error_line(self.message)
        for line in self.details:
            err.print(f"  {line}", markup=False, soft_wrap=True)


def unreachable(exc: httpx.HTTPError, *, url: str, setting: str) -> CliError:
    """The line for a request that got no answer: where it went and which setting to change."""
    what = (
        "did not answer in time" if isinstance(exc, httpx.TimeoutException) else "cannot be reached"
    )
    reason = plain(str(exc)) or type(exc).__name__
    return CliError(
        f"{url} {what} ({reason}); is Kiln running there (`kiln up`)? Point the CLI at "
        f"another address with {setting}",
        code=ExitCode.UNREACHABLE,
    )


class KilnGroup(TyperGroup):
    """The `kiln` group: runs the command, and ends a `CliError` (or a transport error that
    escaped `http.client`) with its line and exit code, a Ctrl-C with 130."""

    # ``ctx`` is Typer's (vendored) click Context, whose class Typer does not export.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            exc.show()
            raise typer.Exit(exc.code) from None
        except httpx.TransportError as exc:
            url = str(exc.request.url) if _has_request(exc) else "the server"
            unreachable(
                exc, url=url, setting="--api-url / KILN_API_URL or --predict-url / KILN_PREDICT_URL"
            ).show()
            raise typer.Exit(ExitCode.UNREACHABLE) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(ExitCode.INTERRUPTED) from None


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018  (a property that raises when the error has no request)
    except RuntimeError:
        return False
    return True
