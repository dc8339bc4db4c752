"""`kiln datasets`: upload and list datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.vocabulary import DataKind
from services.cli import http
from services.cli.http import DEFAULT_API, ApiUrl, console

app = typer.Typer(help="Datasets.", no_args_is_help=True)


@app.command("upload")
def upload(
    path: Path,
    target: Annotated[
        str | None, typer.Option(help="The column to predict (CSV tables only).")
    ] = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Upload a CSV table, or an NPZ of images (np.savez(f, x=images, y=labels))."""
    is_npz = path.suffix.lower() == ".npz"
    ctype = "application/octet-stream" if is_npz else "text/csv"
    form = {"kind": DataKind.IMAGE} if is_npz else {"kind": DataKind.TABLE, "target": target or ""}
    with http.client(api_url) as c, path.open("rb") as f:
        http.print_json(
            http.check(c.post("/datasets", files={"file": (path.name, f, ctype)}, data=form))
        )


@app.command("list")
def list_datasets(api_url: ApiUrl = DEFAULT_API) -> None:
    with http.client(api_url) as c:
        rows = http.check(c.get("/datasets"))["items"]
        builtin = http.check(c.get("/datasets/builtin"))
    table = Table("id", "name", "rows", "columns", "target", "sha256")
    for r in rows:
        table.add_row(
            r["id"], r["name"], str(r["n_rows"]), str(r["n_columns"]), r["target"], r["sha256"][:12]
        )
    for b in builtin:
        target = "y" if b["name"].endswith("_images") else "target"
        table.add_row(f"sklearn:{b['name']}", b["description"], "", "", target, "built in")
    console.print(table)
