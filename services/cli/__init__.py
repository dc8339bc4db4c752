"""The `kiln` command: run the stack (`up`), migrate the registry (`db`), and talk to a
running Kiln over HTTP (`datasets`, `jobs`, `models`, `keys`, `predict`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import Annotated

import typer

from services.cli import datasets, db, jobs, keys, models, predict, searches, up
from services.cli.errors import EXIT_CODES, KilnGroup

app = typer.Typer(
    cls=KilnGroup,
    help="Kiln: train Keras models, register ONNX versions, serve predictions.\n\n"
    "The commands that talk to Kiln find the API at --api-url or KILN_API_URL (default "
    "http://127.0.0.1:8000), the prediction service at --predict-url or KILN_PREDICT_URL "
    "(default http://127.0.0.1:8001), and send the key in KILN_API_KEY. Every read "
    "command takes --json: the API's answer as received, alone on stdout.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
)


def _version(value: bool) -> None:
    if not value:
        return
    try:
        found = installed_version("kiln")
    except PackageNotFoundError:
        found = "unknown (not installed as a distribution)"
    typer.echo(f"kiln {found}")
    raise typer.Exit()


@app.callback()
def main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print Kiln's version and exit."
        ),
    ] = False,
) -> None:
    pass


app.command()(up.up)
app.command()(predict.predict)
app.add_typer(db.app, name="db")
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(searches.app, name="searches")
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")

__all__ = ["app"]
