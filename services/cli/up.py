"""`kiln up`: run the API, the prediction service and Celery workers as one process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.metrics import MULTIPROC_DIR, empty_folder
from services.cli.db import redact
from services.cli.http import console, err
from services.settings import ApiSettings, PredictSettings
from workers.settings import WorkerSettings


@dataclass(frozen=True)
class Child:
    name: str
    command: list[str]
    where: str
    # Its own variables on top of the environment kiln up runs in.
    env: dict[str, str] = field(default_factory=dict)


def up(
    workers: Annotated[int, typer.Option(help="Celery worker processes to start.")] = 1,
) -> None:
    """Start the API, the prediction service and a Celery worker; Ctrl-C stops them all.

    Without DATABASE_URL and REDIS_URL it runs embedded: a SQLite registry, an artifact
    folder and a filesystem broker, all under KILN_HOME (default ./.kiln).
    """
    from registry.migrate import upgrade

    api = ApiSettings()
    upgrade(api.database_url)
    env = dict(os.environ)
    # Children resolve KILN_HOME the same way, whatever their working directory.
    env["KILN_HOME"] = str(api.kiln_home.resolve())
    env.setdefault("PYTHONUNBUFFERED", "1")
    predict = PredictSettings()
    # The dashboard's predict form goes through the API to this predictor.
    env.setdefault(
        "DASHBOARD_PREDICT_URL", f"http://{reachable(predict.predict_host)}:{predict.predict_port}"
    )
    # Each child with several processes gets a metrics folder of its own (plan), empty.
    env.pop(MULTIPROC_DIR, None)
    children = plan(api, predict, WorkerSettings(), workers)
    for child in children:
        if MULTIPROC_DIR in child.env:
            empty_folder(Path(child.env[MULTIPROC_DIR]))
    # Own process groups: Ctrl-C reaches only this command, which stops the children in order.
    procs = [
        (c, subprocess.Popen(c.command, env=env | c.env, start_new_session=True)) for c in children
    ]
    _announce(api, procs)
    raise typer.Exit(supervise(procs))


def reachable(host: str) -> str:
    """Where another process on this machine reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def plan(
    api: ApiSettings, predict: PredictSettings, worker: WorkerSettings, workers: int
) -> list[Child]:
    """The processes `kiln up` starts, with their command lines and their own variables.

    A server with several processes, and every worker (its pool's children), counts its
    metrics in a prometheus_client multiprocess folder of its own under KILN_HOME/metrics;
    each worker serves them on its own port, from WORKER_METRICS_PORT up."""
    py = sys.executable
    metrics = api.kiln_home.resolve() / "metrics"

    def multiprocess(name: str, processes: int) -> dict[str, str]:
        return {MULTIPROC_DIR: str(metrics / name)} if processes > 1 else {}

    uvicorn = [py, "-m", "uvicorn", "--factory", "--log-level", "warning"]
    children = [
        Child(
            "api",
            [
                *uvicorn,
                "services.api.app:app",
                "--host",
                api.api_host,
                "--port",
                str(api.api_port),
                # Each process has its own pool of DATABASE_POOL_SIZE connections.
                "--workers",
                str(api.api_workers),
            ],
            f"http://{api.api_host}:{api.api_port}  (docs: /docs, dashboard: /ui/)",
            multiprocess("api", api.api_workers),
        ),
        Child(
            "predict",
            [
                *uvicorn,
                "services.predict.app:app",
                "--host",
                predict.predict_host,
                "--port",
                str(predict.predict_port),
                # Each worker process builds its own ORT sessions in the lifespan, after the fork.
                "--workers",
                str(predict.predict_workers),
                # A log line per request costs more than a one-row prediction; /metrics counts.
                "--no-access-log",
            ],
            f"http://{predict.predict_host}:{predict.predict_port}  (/v2, /predict/{{model}})",
            multiprocess("predict", predict.predict_workers),
        ),
    ]
    broker = "Redis" if api.redis_url else f"{api.broker_dir}"
    for i in range(workers):
        port = worker.worker_metrics_port + i if worker.worker_metrics_port else 0
        served = f"; metrics: http://{worker.worker_metrics_host}:{port}/metrics" if port else ""
        children.append(
            Child(
                f"worker-{i + 1}",
                [py, "-m", "celery", "-A", "workers.worker", "worker", "--loglevel", "INFO"]
                + ["-n", f"kiln-{i + 1}@%h"],
                f"Celery queues in WORKER_QUEUES (default 'training') on {broker}{served}",
                {"WORKER_METRICS_PORT": str(port), MULTIPROC_DIR: str(metrics / f"worker-{i + 1}")},
            )
        )
    return children


def _announce(api: ApiSettings, procs: list[tuple[Child, subprocess.Popen[bytes]]]) -> None:
    table = Table(title="Kiln is starting", show_lines=False)
    for column in ("process", "pid", "where"):
        table.add_column(column)
    for child, proc in procs:
        table.add_row(child.name, str(proc.pid), child.where)
    console.print(table)
    artifacts = (
        f"s3://{api.s3_bucket}/{api.s3_prefix}"
        if api.artifact_store == "s3"
        else str(api.artifact_root)
    )
    console.print(f"registry: {redact(api.database_url)}   artifacts: {artifacts}")
    console.print("Ctrl-C stops everything.")


def supervise(procs: list[tuple[Child, subprocess.Popen[bytes]]]) -> int:
    """Wait for Ctrl-C (or SIGTERM) or for a child to exit, then stop them all; the exit
    code is 1 when a child ended by itself."""
    stopping = False

    def _stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    while not stopping:
        for child, proc in procs:
            if proc.poll() is not None:
                err.print(
                    f"[red]{child.name} exited with code {proc.returncode}; stopping the rest[/red]"
                )
                stopping, code = True, 1
        time.sleep(0.3)
    for _, proc in procs:
        if proc.poll() is None:
            # The main process only: Celery's parent stops its pool children itself.
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child, proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # A job in flight stays `running` in the registry; the sweeper queues it again.
            err.print(f"{child.name} did not stop in time; killing it")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    console.print("Kiln stopped.")
    return code
