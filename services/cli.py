"""The `kiln` command: run the stack, migrate the registry, and talk to a running Kiln."""

from __future__ import annotations

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
    console.print(f"registry: {_redact(api.database_url)}   artifacts: {api.artifact_root}")
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
    target: Annotated[str, typer.Option(help="The column to predict.")],
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Upload a CSV file."""
    with _client(api_url) as c, path.open("rb") as f:
        _print(
            _check(
                c.post(
                    "/datasets", files={"file": (path.name, f, "text/csv")}, data={"target": target}
                )
            )
        )


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
        table.add_row(f"sklearn:{b['name']}", b["description"], "", "", "target", "built in")
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
