"""`kiln datasets`: upload, list and show datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.vocabulary import DataKind
from services.cli import files, http
from services.cli.http import DEFAULT_API, ApiUrl
from services.cli.output import Json, Quiet, console, emit_json, print_json, when

app = typer.Typer(help="Datasets.", no_args_is_help=True)


@app.command("upload")
def upload(
    path: Path,
    target: Annotated[
        str | None, typer.Option(help="The column to predict (CSV tables only).")
    ] = None,
    json: Json = False,
    quiet: Quiet = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Upload a CSV table, or an NPZ of images (np.savez(f, x=images, y=labels))."""
    is_npz = path.suffix.lower() == ".npz"
    ctype = "application/octet-stream" if is_npz else "text/csv"
    form = {"kind": DataKind.IMAGE} if is_npz else {"kind": DataKind.TABLE, "target": target or ""}
    with files.open_for_upload(path, "PATH") as f, http.client(api_url) as c:
        body = http.check(c.post("/datasets", files={"file": (path.name, f, ctype)}, data=form))
    if json:
        emit_json(body)
    elif quiet:
        typer.echo(body["id"])
    else:
        print_json(body)


@app.command("list")
def list_datasets(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many.")] = 0,
    json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print GET /datasets's JSON as received (the uploaded datasets; the built-in "
            "ones are GET /datasets/builtin, `--builtin --json`), and nothing else.",
        ),
    ] = False,
    builtin: Annotated[
        bool, typer.Option("--builtin", help="Only the datasets that ship with scikit-learn.")
    ] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Uploaded datasets, then the built-in ones (use them as sklearn:<name>)."""
    page: dict[str, Any] = {"items": []}
    with http.client(api_url) as c:
        if not builtin:
            page = http.check(c.get("/datasets", params={"limit": limit, "offset": offset}))
        built_in = http.check(c.get("/datasets/builtin")) if builtin or not json else []
    if json:
        emit_json(built_in if builtin else page)
        return
    table = Table("id", "name", "rows", "columns", "target", "sha256")
    for r in page["items"]:
        table.add_row(
            r["id"], r["name"], str(r["n_rows"]), str(r["n_columns"]), r["target"], r["sha256"][:12]
        )
    for b in built_in:
        target = "y" if b["name"].endswith("_images") else "target"
        table.add_row(f"sklearn:{b['name']}", b["description"], "", "", target, "built in")
    console.print(table)


@app.command("show")
def show(dataset_id: str, json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """A dataset: its shape, columns and their types, the count of each class."""
    with http.client(api_url) as c:
        d = http.check(c.get(f"/datasets/{dataset_id}"))
    if json:
        emit_json(d)
        return
    shape = "×".join(map(str, d.get("shape") or [d["n_rows"], d["n_columns"]]))
    console.print(
        f"{d['id']}: {d['name']} ({d['kind']}, {shape}, target {d['target']!r}), "
        f"{d['size_bytes']} bytes, sha256 {d['sha256']}, uploaded {when(d['created_at'])}"
    )
    if d.get("columns"):
        columns = Table("column", "dtype")
        for col in d["columns"]:
            columns.add_row(col["name"], col["dtype"])
        console.print(columns)
    if d.get("class_counts"):
        classes = Table("class", "rows")
        for label, n in d["class_counts"].items():
            classes.add_row(label, str(n))
        console.print(classes)
