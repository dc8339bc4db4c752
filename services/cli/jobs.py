"""`kiln jobs`: submit, follow, cancel, and the per-epoch curves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from core.vocabulary import JobState
from services.cli import http
from services.cli.http import DEFAULT_API, ApiUrl, console, err

app = typer.Typer(help="Training jobs.", no_args_is_help=True)


@app.command("submit")
def submit(
    model: Annotated[str, typer.Option(help="Model name for the new version.")],
    dataset: Annotated[str, typer.Option(help="Dataset id or sklearn:<name>.")],
    spec: Annotated[Path, typer.Option(help="JSON file with the model spec.")],
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Submit a training job."""
    body = {"model_name": model, "dataset": dataset, "spec": json.loads(spec.read_text())}
    with http.client(api_url) as c:
        accepted = http.check(c.post("/jobs", json=body))
    queued(accepted, wait=wait, api_url=api_url)


def queued(accepted: dict[str, object], *, wait: bool, api_url: str) -> None:
    """Say where a new job is; with ``wait``, follow it until it ends."""
    links = accepted["links"]
    assert isinstance(links, dict)
    console.print(f"job {accepted['id']} queued: {links['self']}")
    if wait:
        show(str(accepted["id"]), wait=True, api_url=api_url)


@app.command("show")
def show(
    job_id: str,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Show a job's state and progress."""
    with http.client(api_url) as c:
        while True:
            job = http.check(c.get(f"/jobs/{job_id}"))
            p = job.get("progress") or {}
            where = (
                f"{p.get('phase')} fold {p.get('fold')}/{p.get('n_folds')} epoch {p.get('epoch')}/{p.get('epochs')}"
                if p
                else ""
            )
            console.print(f"{job['state']:<10} {where}")
            if not wait or JobState(job["state"]).terminal:
                break
            time.sleep(2)
    if job["state"] == JobState.FAILED:
        err.print(f"[red]failed:[/red] {job['reason']}")
        raise typer.Exit(1)
    if job.get("model_version"):
        console.print(f"registered {job['model_name']} version {job['model_version']}")


@app.command("cancel")
def cancel(job_id: str, api_url: ApiUrl = DEFAULT_API) -> None:
    with http.client(api_url) as c:
        job = http.check(c.post(f"/jobs/{job_id}/cancel"))
    console.print(f"job {job_id}: {job['state']}")


@app.command("history")
def history(job_id: str, api_url: ApiUrl = DEFAULT_API) -> None:
    """Per-epoch curves so far: epochs run and the last values of each fold and the refit."""
    with http.client(api_url) as c:
        data = http.check(c.get(f"/jobs/{job_id}/history"))
    fits = [*data["folds"], *([data["refit"]] if data["refit"] else [])]
    names = sorted({name for fit in fits for name in fit["history"]})
    table = Table("fit", "done", "epochs", *names, title=f"job {job_id}: {data['state']}")
    for fit in fits:
        curves = fit["history"]
        table.add_row(
            "refit" if fit["fold"] is None else f"fold {fit['fold']}",
            "yes" if fit["done"] else "no",
            str(len(next(iter(curves.values()), []))),
            *(f"{curves[n][-1]:.4f}" if curves.get(n) else "" for n in names),
        )
    console.print(table)
