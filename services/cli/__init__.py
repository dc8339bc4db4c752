"""The `kiln` command: run the stack (`up`), migrate the registry (`db`), and talk to a
running Kiln over HTTP (`datasets`, `jobs`, `models`, `keys`, `predict`)."""

from __future__ import annotations

import typer

from services.cli import datasets, db, jobs, keys, models, predict, up

app = typer.Typer(
    help="Kiln: train Keras models, register ONNX versions, serve predictions.",
    no_args_is_help=True,
)
app.command()(up.up)
app.command()(predict.predict)
app.add_typer(db.app, name="db")
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")

__all__ = ["app"]
