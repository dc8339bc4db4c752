"""`kiln models`: the registry: versions, metrics, tags, lineage, comparison, archive."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from services.cli import aliases, files, http, jobs
from services.cli.errors import CliError
from services.cli.follow import evaluated_on
from services.cli.http import DEFAULT_API, ApiUrl
from services.cli.output import Json, Quiet, console, emit_json, err, print_json

app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(aliases.app, name="alias")
Undo = Annotated[bool, typer.Option("--undo", help="Unarchive it.")]
Yes = Annotated[bool, typer.Option("--yes", help="Do not ask.")]
VersionOrAlias = Annotated[
    str,
    typer.Argument(
        metavar="VERSION_OR_ALIAS",
        help="A version number (3 or v3), an alias (production), or latest.",
        show_default=False,
    ),
]


def resolve(c: httpx.Client, name: str, ref: str) -> int:
    """The version number ``ref`` names: itself, the one an alias points at (GET
    /models/{name}/aliases/{alias}), or for `latest` the newest one not archived."""
    number = re.fullmatch(r"v?(\d+)", ref)
    if number:
        return int(number.group(1))
    if ref == "latest":
        latest = http.check(c.get(f"/models/{name}"))["latest_version"]
        if latest is None:
            raise CliError(f"model {name!r} has no version that is not archived")
        return int(latest)
    return int(http.check(c.get(f"/models/{name}/aliases/{ref}"))["version"])


@app.command("list")
def list_models(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many.")] = 0,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    with http.client(api_url) as c:
        page = http.check(c.get("/models", params={"limit": limit, "offset": offset}))
    if json:
        emit_json(page)
        return
    table = Table("name", "latest", "versions", "aliases")
    for r in page["items"]:
        table.add_row(
            r["name"],
            "" if r["latest_version"] is None else str(r["latest_version"]),
            ", ".join(map(str, r["versions"])),
            ", ".join(f"{a}→v{v}" for a, v in (r.get("aliases") or {}).items()),
        )
    console.print(table)


@app.command("show")
def show(
    name: str, version: VersionOrAlias, json: Json = False, api_url: ApiUrl = DEFAULT_API
) -> None:
    """A version's metrics (mean ± std over folds) and parity."""
    with http.client(api_url) as c:
        number = resolve(c, name, version)
        mv = http.check(c.get(f"/models/{name}/versions/{number}"))
    if json:
        emit_json(mv)
        return
    version = str(number)
    table = Table("metric", "mean", "std", title=f"{name} v{version}: {evaluated_on(mv['spec'])}")
    test = mv.get("test_metrics") or {}
    if test:
        table.add_column(f"test ({test.get('n_test')} rows)")
    for metric, stats in mv["metrics"].items():
        cells = [metric, f"{stats['mean']:.4f}", f"{stats['std']:.4f}"]
        if test:
            value = test.get(metric)
            cells.append(f"{value:.4f}" if isinstance(value, int | float) else "")
        table.add_row(*cells)
    console.print(table)
    parity = mv["parity"]
    console.print(
        f"Keras vs ONNX Runtime: max |diff| {parity['max_abs_diff']:.2e} (tolerance {parity['tolerance']})"
    )
    if mv.get("description"):
        console.print(f"description: {mv['description']}")
    if mv.get("aliases"):
        console.print(f"aliases: {', '.join(mv['aliases'])}")
    if mv.get("tags"):
        console.print("tags: " + ", ".join(f"{k}={v}" for k, v in mv["tags"].items()))
    if mv.get("archived_at"):
        console.print(f"archived at {mv['archived_at']}")
    if mv.get("retrained_from"):
        src = mv["retrained_from"]
        console.print(f"retrained from {src['model_name']} v{src['version']}")


@app.command("tag")
def tag(
    name: str,
    key: str,
    value: Annotated[str | None, typer.Argument(help="Leave out with --delete.")] = None,
    version: Annotated[int | None, typer.Option(help="Tag this version, not the model.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the tag.")] = False,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Set (or with --delete remove) a tag on a model or, with --version, on a version; shows
    all of its tags."""
    path = f"/models/{name}" + (f"/versions/{version}" if version else "") + f"/tags/{key}"
    with http.client(api_url) as c:
        if delete:
            tags = http.check(c.delete(path))
        else:
            if value is None:
                err.print("[red]a VALUE is needed[/red] (or --delete to remove the tag)")
                raise typer.Exit(2)
            tags = http.check(c.put(path, json={"value": value}))
    if json:
        emit_json(tags)
        return
    print_json(tags)


@app.command("describe")
def describe(
    name: str,
    text: Annotated[str, typer.Argument(help="The description; '' removes it.")],
    version: Annotated[int | None, typer.Option(help="Describe this version.")] = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Set the description of a model or, with --version, of a version."""
    path = f"/models/{name}" + (f"/versions/{version}" if version else "")
    with http.client(api_url) as c:
        http.check(c.patch(path, json={"description": text or None}))
    console.print("description removed" if not text else "description set")


@app.command("versions")
def list_versions(
    name: str,
    tag: Annotated[list[str] | None, typer.Option(help="key:value or key; repeatable.")] = None,
    alias: Annotated[
        str | None, typer.Option(help="Only the version this alias points at.")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="A dataset id or sha256.")] = None,
    archived: Annotated[bool | None, typer.Option("--archived/--active")] = None,
    order_by: Annotated[str | None, typer.Option(help="A metric: f1, f1.mean, rmse.std.")] = None,
    desc: Annotated[bool, typer.Option(help="Largest first.")] = False,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """List versions, filtered and ordered by a stored metric."""
    params: dict[str, Any] = {"tag": tag or [], "desc": desc}
    for key, val in (("alias", alias), ("dataset", dataset), ("order_by", order_by)):
        if val is not None:
            params[key] = val
    if archived is not None:
        params["archived"] = archived
    with http.client(api_url) as c:
        rows = http.check(c.get(f"/models/{name}/versions", params=params))
    if json:
        emit_json(rows)
        return
    metric = (order_by or "").partition(".")[0]
    table = Table("version", "aliases", "tags", metric or "f1 (mean)", "archived", "dataset")
    for r in rows:
        stats = r["metrics"].get(metric or "f1") or {}
        stat = (order_by or "f1.mean").partition(".")[2] or "mean"
        value = stats.get(stat)
        table.add_row(
            str(r["version"]),
            ", ".join(r["aliases"]),
            ", ".join(f"{k}={v}" for k, v in r["tags"].items()),
            "" if value is None else f"{value:.4f}",
            "yes" if r["archived_at"] else "",
            r["dataset"]["sha256"][:12],
        )
    console.print(table)


@app.command("compare")
def compare(
    name: str,
    versions: Annotated[list[int], typer.Argument(help="Two or more; the first is the baseline.")],
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Every metric side by side: mean ± std, per-fold values, difference from the first."""
    with http.client(api_url) as c:
        body = http.check(
            c.get(f"/models/{name}/compare", params={"versions": ",".join(map(str, versions))})
        )
    if json:
        emit_json(body)
        return
    table = Table("metric", "version", "mean ± std", "folds", f"Δ vs v{body['baseline']}")
    for metric, rows in body["metrics"].items():
        for r in rows:
            mean = "n/a" if r["mean"] is None else f"{r['mean']:.4f} ± {r['std']:.4f}"
            folds = " ".join("-" if f is None else f"{f:.3f}" for f in r["folds"])
            diff = r["diff_from_baseline"]
            table.add_row(
                metric, str(r["version"]), mean, folds, "" if diff is None else f"{diff:+.4f}"
            )
    console.print(table)


@app.command("lineage")
def lineage(name: str, version: int, json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """The job, spec, seed, dataset, library versions and device behind a version."""
    with http.client(api_url) as c:
        body = http.check(c.get(f"/models/{name}/versions/{version}/lineage"))
    if json:
        emit_json(body)
        return
    print_json(body)


@app.command("retrain")
def retrain(
    name: str,
    version: int,
    dataset: Annotated[str | None, typer.Option(help="Dataset id or sklearn:<name>.")] = None,
    model: Annotated[str | None, typer.Option(help="Register into this model instead.")] = None,
    wait: jobs.Wait = False,
    json: Json = False,
    quiet: Quiet = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Train again from VERSION's exact spec, optionally on another dataset."""
    body = {k: v for k, v in (("dataset", dataset), ("model_name", model)) if v is not None}
    with http.client(api_url) as c:
        accepted = http.check(c.post(f"/models/{name}/versions/{version}/retrain", json=body))
    jobs.queued(accepted, wait=wait, json=json, quiet=quiet, api_url=api_url)


@app.command("archive")
def archive(name: str, version: int, undo: Undo = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """Archive a version: kept, served by number or alias, never as the newest."""
    action = "unarchive" if undo else "archive"
    with http.client(api_url) as c:
        http.check(c.post(f"/models/{name}/versions/{version}/{action}"))
    console.print(f"{name} v{version} {action}d")


@app.command("delete")
def delete(name: str, version: int, yes: Yes = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """Delete a version no alias points at; its files go unless something else uses them."""
    if not yes:
        typer.confirm(f"Delete {name} version {version}?", abort=True)
    with http.client(api_url) as c:
        resp = c.delete(f"/models/{name}/versions/{version}")
        if resp.status_code != 204:
            http.check(resp)
    console.print(f"{name} v{version} deleted")


@app.command("download")
def download(
    name: str,
    version: VersionOrAlias,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="A file, or a folder for NAME-vN.onnx (default: the current folder).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Download a version's ONNX model, checked against the sha256 the registry records.

    The file is streamed to a temporary name beside the output and renamed once its sha256
    matches: a download that breaks or differs leaves nothing behind."""
    with http.client(api_url) as c:
        number = resolve(c, name, version)
        mv = http.check(c.get(f"/models/{name}/versions/{number}"))
        expected = mv["artifacts"]["onnx"]["sha256"]
        target = files.output_path(output or Path.cwd(), f"{name}-v{number}.onnx", force=force)
        part = target.with_name(f".{target.name}.{os.getpid()}.part")
        digest, size = hashlib.sha256(), 0
        try:
            with c.stream("GET", f"/models/{name}/versions/{number}/artifacts/onnx") as resp:
                if resp.is_error:
                    resp.read()
                    raise http.refused(resp)
                try:
                    with part.open("wb") as f:
                        for chunk in resp.iter_bytes():
                            digest.update(chunk)
                            f.write(chunk)
                            size += len(chunk)
                except OSError as exc:
                    raise files.write_failed(target, exc) from None
            if digest.hexdigest() != expected:
                raise CliError(
                    f"{name} v{number}: the downloaded file's sha256 is {digest.hexdigest()}, "
                    f"the registry records {expected}; nothing was written"
                )
            try:
                os.replace(part, target)
            except OSError as exc:
                raise files.write_failed(target, exc) from None
        finally:
            part.unlink(missing_ok=True)
    console.print(
        f"{name} v{number}: {size} bytes written to {target} (sha256 {expected}, checked)"
    )


@app.command("report")
def report(
    name: str,
    version: VersionOrAlias,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the report as one self-contained HTML file (a file, or a "
            "folder for NAME-vN-report.html).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Queue a job that writes the report of a version registered before reports.",
        ),
    ] = False,
    wait: jobs.Wait = False,
    json: Json = False,
    quiet: Quiet = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """A version's evaluation report: each fold's and the test rows' scores; with --html,
    the curves, calibration and threshold table in one file to open or attach."""
    with http.client(api_url) as c:
        number = resolve(c, name, version)
        url = f"/models/{name}/versions/{number}/report"
        if write:
            accepted = http.check(c.post(url))
            jobs.queued(accepted, wait=wait, json=json, quiet=quiet, api_url=api_url)
            return
        body = http.check(c.get(url))
        if html is not None:
            target = files.output_path(
                html, f"{name}-v{number}-report.html", force=force, option="--html"
            )
            page = c.get(f"{url}.html")
            if page.is_error:
                raise http.refused(page)
            try:
                target.write_bytes(page.content)
            except OSError as exc:
                raise files.write_failed(target, exc, "--html") from None
            err.print(f"wrote {target} ({len(page.content):,} bytes)")
    if json:
        emit_json(body)
        return
    names = ("mae", "rmse", "r2") if body["class_labels"] is None else ("accuracy", "f1", "roc_auc")
    table = Table("rows", "n", *names, *(() if body["class_labels"] is None else ("brier",)))
    for s in body["sections"]:
        source = f"fold {s['fold']}" if s["source"] == "fold" else f"{s['source']} rows"
        figures = [s["metrics"].get(n) for n in names]
        if body["class_labels"] is not None:
            figures.append(s["brier"])
        table.add_row(
            source, str(s["n_rows"]), *("n/a" if f is None else f"{f:.4f}" for f in figures)
        )
    console.print(table)
