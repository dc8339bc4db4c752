"""`kiln models`: the registry: versions, metrics, tags, lineage, comparison, archive."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from services.cli import aliases, http, jobs
from services.cli.http import DEFAULT_API, ApiUrl, console, err

app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(aliases.app, name="alias")
Undo = Annotated[bool, typer.Option("--undo", help="Unarchive it.")]
Yes = Annotated[bool, typer.Option("--yes", help="Do not ask.")]


@app.command("list")
def list_models(api_url: ApiUrl = DEFAULT_API) -> None:
    with http.client(api_url) as c:
        rows = http.check(c.get("/models"))["items"]
    table = Table("name", "latest", "versions")
    for r in rows:
        table.add_row(r["name"], str(r["latest_version"]), ", ".join(map(str, r["versions"])))
    console.print(table)


@app.command("show")
def show(name: str, version: int, api_url: ApiUrl = DEFAULT_API) -> None:
    """A version's metrics (mean ± std over folds) and parity."""
    with http.client(api_url) as c:
        mv = http.check(c.get(f"/models/{name}/versions/{version}"))
    table = Table("metric", "mean", "std", title=f"{name} v{version}: {mv['spec']['k_folds']}-fold")
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
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Set (or with --delete remove) a tag on a model or, with --version, on a version."""
    path = f"/models/{name}" + (f"/versions/{version}" if version else "") + f"/tags/{key}"
    with http.client(api_url) as c:
        if delete:
            tags = http.check(c.delete(path))
        else:
            if value is None:
                err.print("[red]a VALUE is needed[/red] (or --delete to remove the tag)")
                raise typer.Exit(2)
            tags = http.check(c.put(path, json={"value": value}))
    http.print_json(tags)


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
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Every metric side by side: mean ± std, per-fold values, difference from the first."""
    with http.client(api_url) as c:
        body = http.check(
            c.get(f"/models/{name}/compare", params={"versions": ",".join(map(str, versions))})
        )
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
def lineage(name: str, version: int, api_url: ApiUrl = DEFAULT_API) -> None:
    """The job, spec, seed, dataset, library versions and device behind a version."""
    with http.client(api_url) as c:
        http.print_json(http.check(c.get(f"/models/{name}/versions/{version}/lineage")))


@app.command("retrain")
def retrain(
    name: str,
    version: int,
    dataset: Annotated[str | None, typer.Option(help="Dataset id or sklearn:<name>.")] = None,
    model: Annotated[str | None, typer.Option(help="Register into this model instead.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Train again from VERSION's exact spec, optionally on another dataset."""
    body = {k: v for k, v in (("dataset", dataset), ("model_name", model)) if v is not None}
    with http.client(api_url) as c:
        accepted = http.check(c.post(f"/models/{name}/versions/{version}/retrain", json=body))
    jobs.queued(accepted, wait=wait, api_url=api_url)


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
