"""The `kiln` command: run the stack, migrate the registry, and talk to a running Kiln."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Kiln: train Keras models, register ONNX versions, serve predictions.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="The registry database.", no_args_is_help=True)
datasets_app = typer.Typer(help="Datasets.", no_args_is_help=True)
jobs_app = typer.Typer(help="Training jobs.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")

console = Console()
err = Console(stderr=True)

ApiUrl = Annotated[str, typer.Option(envvar="KILN_API_URL", help="The control-plane API.")]
PredictUrl = Annotated[str, typer.Option(envvar="KILN_PREDICT_URL", help="The prediction service.")]
DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_PREDICT = "http://127.0.0.1:8001"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the registry schema to the newest revision (Alembic)."""
    from registry.migrate import upgrade
    from registry.settings import RegistrySettings

    settings = RegistrySettings()
    upgrade(settings.database_url)
    console.print(f"registry at {_redact(settings.database_url)} is up to date")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


@app.command()
def up(
    workers: Annotated[int, typer.Option(help="Celery worker processes to start.")] = 1,
) -> None:
    """Start the API, the prediction service and a Celery worker; Ctrl-C stops them all.

    Without DATABASE_URL and REDIS_URL it runs embedded: a SQLite registry, an artifact
    folder and a filesystem broker, all under KILN_HOME (default ./.kiln).
    """
    from registry.migrate import upgrade
    from services.settings import ApiSettings, PredictSettings

    api = ApiSettings()
    predict = PredictSettings()
    upgrade(api.database_url)
    env = dict(os.environ)
    # Children resolve KILN_HOME the same way, whatever their working directory.
    env["KILN_HOME"] = str(api.kiln_home.resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")
    py = sys.executable
    specs: list[tuple[str, list[str], str]] = [
        (
            "api",
            [
                py,
                "-m",
                "uvicorn",
                "services.api.app:app",
                "--factory",
                "--host",
                api.api_host,
                "--port",
                str(api.api_port),
                "--log-level",
                "warning",
            ],
            f"http://{api.api_host}:{api.api_port}  (docs: /docs)",
        ),
        (
            "predict",
            [
                py,
                "-m",
                "uvicorn",
                "services.predict.app:app",
                "--factory",
                "--host",
                predict.predict_host,
                "--port",
                str(predict.predict_port),
                # Each worker process builds its own ORT sessions in the lifespan, after the fork.
                "--workers",
                str(predict.predict_workers),
                # A log line per request costs more than a one-row prediction; /metrics counts.
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            f"http://{predict.predict_host}:{predict.predict_port}  (/v2, /predict/{{model}})",
        ),
    ]
    for i in range(workers):
        specs.append(
            (
                f"worker-{i + 1}",
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "workers.worker",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "-n",
                    f"kiln-{i + 1}@%h",
                ],
                "Celery queues in WORKER_QUEUES (default 'training') on "
                + ("Redis" if api.redis_url else f"{api.broker_dir}"),
            )
        )
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    for name, cmd, _ in specs:
        # Own process groups: Ctrl-C reaches only this command, which stops the children in order.
        procs.append((name, subprocess.Popen(cmd, env=env, start_new_session=True)))
    table = Table(title="Kiln is starting", show_lines=False)
    table.add_column("process")
    table.add_column("pid")
    table.add_column("where")
    for (name, proc), (_, _, where) in zip(procs, specs, strict=True):
        table.add_row(name, str(proc.pid), where)
    console.print(table)
    artifacts = (
        f"s3://{api.s3_bucket}/{api.s3_prefix}"
        if api.artifact_store == "s3"
        else str(api.artifact_root)
    )
    console.print(f"registry: {_redact(api.database_url)}   artifacts: {artifacts}")
    console.print("Ctrl-C stops everything.")

    stopping = False

    def _stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    while not stopping:
        for name, proc in procs:
            if proc.poll() is not None:
                err.print(
                    f"[red]{name} exited with code {proc.returncode}; stopping the rest[/red]"
                )
                stopping, code = True, 1
        time.sleep(0.3)
    for _, proc in procs:
        if proc.poll() is None:
            # The main process only: Celery's parent stops its pool children itself.
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # A job in flight stays `running` in the registry; the sweeper queues it again.
            err.print(f"{name} did not stop in time; killing it")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    console.print("Kiln stopped.")
    raise typer.Exit(code)


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60)


def _check(resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        try:
            body = resp.json()
            detail = body.get("detail") or body.get("error") or body
        except ValueError:
            detail = resp.text
        err.print(f"[red]{resp.status_code}[/red] {detail}")
        raise typer.Exit(1)
    return resp.json()


def _print(data: Any) -> None:
    console.print_json(json.dumps(data))


@datasets_app.command("upload")
def datasets_upload(
    path: Path,
    target: Annotated[
        str | None, typer.Option(help="The column to predict (CSV tables only).")
    ] = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Upload a CSV table, or an NPZ of images (np.savez(f, x=images, y=labels))."""
    is_npz = path.suffix.lower() == ".npz"
    ctype = "application/octet-stream" if is_npz else "text/csv"
    form = {"kind": "image"} if is_npz else {"kind": "table", "target": target or ""}
    with _client(api_url) as c, path.open("rb") as f:
        _print(_check(c.post("/datasets", files={"file": (path.name, f, ctype)}, data=form)))


@datasets_app.command("list")
def datasets_list(api_url: ApiUrl = DEFAULT_API) -> None:
    with _client(api_url) as c:
        rows = _check(c.get("/datasets"))["items"]
        builtin = _check(c.get("/datasets/builtin"))
    table = Table("id", "name", "rows", "columns", "target", "sha256")
    for r in rows:
        table.add_row(
            r["id"], r["name"], str(r["n_rows"]), str(r["n_columns"]), r["target"], r["sha256"][:12]
        )
    for b in builtin:
        target = "y" if b["name"].endswith("_images") else "target"
        table.add_row(f"sklearn:{b['name']}", b["description"], "", "", target, "built in")
    console.print(table)


@jobs_app.command("submit")
def jobs_submit(
    model: Annotated[str, typer.Option(help="Model name for the new version.")],
    dataset: Annotated[str, typer.Option(help="Dataset id or sklearn:<name>.")],
    spec: Annotated[Path, typer.Option(help="JSON file with the model spec.")],
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Submit a training job."""
    body = {"model_name": model, "dataset": dataset, "spec": json.loads(spec.read_text())}
    with _client(api_url) as c:
        accepted = _check(c.post("/jobs", json=body))
    console.print(f"job {accepted['id']} queued: {accepted['links']['self']}")
    if wait:
        jobs_show(accepted["id"], wait=True, api_url=api_url)


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Show a job's state and progress."""
    with _client(api_url) as c:
        while True:
            job = _check(c.get(f"/jobs/{job_id}"))
            p = job.get("progress") or {}
            where = (
                f"{p.get('phase')} fold {p.get('fold')}/{p.get('n_folds')} epoch {p.get('epoch')}/{p.get('epochs')}"
                if p
                else ""
            )
            console.print(f"{job['state']:<10} {where}")
            if not wait or job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(2)
    if job["state"] == "failed":
        err.print(f"[red]failed:[/red] {job['reason']}")
        raise typer.Exit(1)
    if job.get("model_version"):
        console.print(f"registered {job['model_name']} version {job['model_version']}")


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, api_url: ApiUrl = DEFAULT_API) -> None:
    with _client(api_url) as c:
        job = _check(c.post(f"/jobs/{job_id}/cancel"))
    console.print(f"job {job_id}: {job['state']}")


@jobs_app.command("history")
def jobs_history(job_id: str, api_url: ApiUrl = DEFAULT_API) -> None:
    """Per-epoch curves so far: epochs run and the last values of each fold and the refit."""
    with _client(api_url) as c:
        data = _check(c.get(f"/jobs/{job_id}/history"))
    fits = [*data["folds"], *([data["refit"]] if data["refit"] else [])]
    names = sorted({name for fit in fits for name in fit["history"]})
    table = Table("fit", "done", "epochs", *names, title=f"job {job_id}: {data['state']}")
    for fit in fits:
        history = fit["history"]
        table.add_row(
            "refit" if fit["fold"] is None else f"fold {fit['fold']}",
            "yes" if fit["done"] else "no",
            str(len(next(iter(history.values()), []))),
            *(f"{history[n][-1]:.4f}" if history.get(n) else "" for n in names),
        )
    console.print(table)


@models_app.command("list")
def models_list(api_url: ApiUrl = DEFAULT_API) -> None:
    with _client(api_url) as c:
        rows = _check(c.get("/models"))["items"]
    table = Table("name", "latest", "versions")
    for r in rows:
        table.add_row(r["name"], str(r["latest_version"]), ", ".join(map(str, r["versions"])))
    console.print(table)


@models_app.command("show")
def models_show(name: str, version: int, api_url: ApiUrl = DEFAULT_API) -> None:
    """A version's metrics (mean ± std over folds) and parity."""
    with _client(api_url) as c:
        mv = _check(c.get(f"/models/{name}/versions/{version}"))
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


alias_app = typer.Typer(help="Aliases: promote, roll back, delete, history.", no_args_is_help=True)
models_app.add_typer(alias_app, name="alias")

Actor = Annotated[
    str,
    typer.Option(
        envvar="KILN_ACTOR",
        help="Who makes the change (sent as X-Kiln-Actor; kept in the alias history).",
    ),
]


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _history_table(events: list[dict[str, Any]], title: str) -> Table:
    table = Table("at", "alias", "from", "to", "actor", "reason", title=title)
    for e in events:
        table.add_row(
            e["at"],
            e["alias"],
            "-" if e["from_version"] is None else str(e["from_version"]),
            "(deleted)" if e["to_version"] is None else str(e["to_version"]),
            e["actor"] or "",
            e["reason"] or "",
        )
    return table


def _moved(event: dict[str, Any], name: str) -> None:
    src = "nothing" if event["from_version"] is None else f"v{event['from_version']}"
    dst = "deleted" if event["to_version"] is None else f"v{event['to_version']}"
    console.print(f"{name}@{event['alias']}: {src} → {dst}")


@alias_app.command("set")
def alias_set(
    name: str,
    alias: str,
    version: int,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the history.")] = None,
    actor: Actor = "",
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Point ALIAS at VERSION (create or move it: a promotion)."""
    with _client(api_url) as c:
        event = _check(
            c.put(
                f"/models/{name}/aliases/{alias}",
                json={"version": version, "reason": reason},
                headers={"X-Kiln-Actor": actor or _default_actor()},
            )
        )
    _moved(event, name)


@alias_app.command("delete")
def alias_delete(
    name: str,
    alias: str,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the history.")] = None,
    actor: Actor = "",
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Delete ALIAS (recorded in the history; `rollback` restores it)."""
    params = {"reason": reason} if reason else {}
    with _client(api_url) as c:
        event = _check(
            c.delete(
                f"/models/{name}/aliases/{alias}",
                params=params,
                headers={"X-Kiln-Actor": actor or _default_actor()},
            )
        )
    _moved(event, name)


@alias_app.command("rollback")
def alias_rollback(
    name: str,
    alias: str,
    to: Annotated[
        str, typer.Option(help="A version number, or `previous` (where it pointed before).")
    ] = "previous",
    reason: Annotated[str | None, typer.Option(help="Why; kept in the history.")] = None,
    actor: Actor = "",
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Move ALIAS back to the previous version, or to the one named with --to."""
    target: int | str = to
    if to != "previous":
        try:
            target = int(to)
        except ValueError:
            err.print(f"[red]--to {to!r}[/red]: expected a version number or 'previous'")
            raise typer.Exit(2) from None
    with _client(api_url) as c:
        event = _check(
            c.post(
                f"/models/{name}/aliases/{alias}/rollback",
                json={"to": target, "reason": reason},
                headers={"X-Kiln-Actor": actor or _default_actor()},
            )
        )
    _moved(event, name)


@alias_app.command("list")
def alias_list(name: str, api_url: ApiUrl = DEFAULT_API) -> None:
    with _client(api_url) as c:
        rows = _check(c.get(f"/models/{name}/aliases"))
    table = Table("alias", "version", "since")
    for r in rows:
        table.add_row(r["alias"], str(r["version"]), r["updated_at"])
    console.print(table)


@alias_app.command("history")
def alias_history(
    name: str,
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    limit: int = 100,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Every alias change of the model, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if alias:
        params["alias"] = alias
    with _client(api_url) as c:
        events = _check(c.get(f"/models/{name}/aliases/history", params=params))
    console.print(_history_table(events, f"{name}: alias history"))


@models_app.command("tag")
def models_tag(
    name: str,
    key: str,
    value: Annotated[str | None, typer.Argument(help="Leave out with --delete.")] = None,
    version: Annotated[int | None, typer.Option(help="Tag this version, not the model.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the tag.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Set (or with --delete remove) a tag on a model or, with --version, on a version."""
    path = f"/models/{name}" + (f"/versions/{version}" if version else "") + f"/tags/{key}"
    with _client(api_url) as c:
        if delete:
            tags = _check(c.delete(path))
        else:
            if value is None:
                err.print("[red]a VALUE is needed[/red] (or --delete to remove the tag)")
                raise typer.Exit(2)
            tags = _check(c.put(path, json={"value": value}))
    _print(tags)


@models_app.command("describe")
def models_describe(
    name: str,
    text: Annotated[str, typer.Argument(help="The description; '' removes it.")],
    version: Annotated[int | None, typer.Option(help="Describe this version.")] = None,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Set the description of a model or, with --version, of a version."""
    path = f"/models/{name}" + (f"/versions/{version}" if version else "")
    with _client(api_url) as c:
        _check(c.patch(path, json={"description": text or None}))
    console.print("description removed" if not text else "description set")


@models_app.command("versions")
def models_versions(
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
    with _client(api_url) as c:
        rows = _check(c.get(f"/models/{name}/versions", params=params))
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


@models_app.command("compare")
def models_compare(
    name: str,
    versions: Annotated[list[int], typer.Argument(help="Two or more; the first is the baseline.")],
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Every metric side by side: mean ± std, per-fold values, difference from the first."""
    with _client(api_url) as c:
        body = _check(
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


@models_app.command("lineage")
def models_lineage(name: str, version: int, api_url: ApiUrl = DEFAULT_API) -> None:
    """The job, spec, seed, dataset, library versions and device behind a version."""
    with _client(api_url) as c:
        _print(_check(c.get(f"/models/{name}/versions/{version}/lineage")))


@models_app.command("retrain")
def models_retrain(
    name: str,
    version: int,
    dataset: Annotated[str | None, typer.Option(help="Dataset id or sklearn:<name>.")] = None,
    model: Annotated[str | None, typer.Option(help="Register into this model instead.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Train again from VERSION's exact spec, optionally on another dataset."""
    body = {k: v for k, v in (("dataset", dataset), ("model_name", model)) if v is not None}
    with _client(api_url) as c:
        accepted = _check(c.post(f"/models/{name}/versions/{version}/retrain", json=body))
    console.print(f"job {accepted['id']} queued: {accepted['links']['self']}")
    if wait:
        jobs_show(accepted["id"], wait=True, api_url=api_url)


@models_app.command("archive")
def models_archive(
    name: str,
    version: int,
    undo: Annotated[bool, typer.Option("--undo", help="Unarchive it.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Archive a version: kept, served by number or alias, never as the newest."""
    action = "unarchive" if undo else "archive"
    with _client(api_url) as c:
        _check(c.post(f"/models/{name}/versions/{version}/{action}"))
    console.print(f"{name} v{version} {action}d")


@models_app.command("delete")
def models_delete(
    name: str,
    version: int,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Delete a version no alias points at; its files go unless something else uses them."""
    if not yes:
        typer.confirm(f"Delete {name} version {version}?", abort=True)
    with _client(api_url) as c:
        resp = c.delete(f"/models/{name}/versions/{version}")
        if resp.status_code != 204:
            _check(resp)
    console.print(f"{name} v{version} deleted")


@app.command()
def predict(
    model: str,
    rows: Annotated[Path, typer.Option(help="JSON file: a list of {feature: value} objects.")],
    version: Annotated[int | None, typer.Option(help="Defaults to the newest.")] = None,
    predict_url: PredictUrl = DEFAULT_PREDICT,
) -> None:
    """Predict with named features through the prediction service."""
    path = f"/predict/{model}" + (f"/versions/{version}" if version else "")
    with _client(predict_url) as c:
        _print(_check(c.post(path, json={"rows": json.loads(rows.read_text())})))


if __name__ == "__main__":
    app()
