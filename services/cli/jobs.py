"""`kiln jobs`: submit, list, follow, cancel, and the per-epoch curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.vocabulary import JobState
from services.cli import files, follow, http
from services.cli.http import DEFAULT_API, ApiUrl
from services.cli.output import Json, Quiet, console, emit_json, when

app = typer.Typer(help="Training jobs.", no_args_is_help=True)
Wait = Annotated[
    bool,
    typer.Option(
        help="Follow the job until it ends: a bar per fold and the refit, then the metrics."
    ),
]


@app.command("submit")
def submit(
    model: Annotated[str, typer.Option(help="Model name for the new version.")],
    dataset: Annotated[str, typer.Option(help="Dataset id or sklearn:<name>.")],
    spec: Annotated[Path, typer.Option(help="JSON file with the model spec.")],
    wait: Wait = False,
    json: Json = False,
    quiet: Quiet = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Submit a training job. With --json: the 202's body, or with --wait the final job."""
    body = {"model_name": model, "dataset": dataset, "spec": files.read_json(spec, "--spec")}
    with http.client(api_url) as c:
        accepted = http.check(c.post("/jobs", json=body))
    queued(accepted, wait=wait, json=json, quiet=quiet, api_url=api_url)


def queued(
    accepted: dict[str, Any], *, wait: bool, api_url: str, json: bool = False, quiet: bool = False
) -> None:
    """Say where a new job is; with ``wait``, follow it until it ends. With ``quiet``, the
    job's id is all that stdout gets (after the job ended, with ``wait``)."""
    if quiet and not json:
        if wait:
            with http.client(api_url) as c:
                follow.refuse_unsuccessful(follow.follow(c, str(accepted["id"])))
        typer.echo(accepted["id"])
        return
    if not wait:
        if json:
            emit_json(accepted)
        else:
            console.print(f"job {accepted['id']} queued: {accepted['links']['self']}")
        return
    if not json:
        console.print(f"job {accepted['id']} queued: {accepted['links']['self']}")
    show(str(accepted["id"]), wait=True, json=json, api_url=api_url)


@app.command("show")
def show(
    job_id: str,
    wait: Wait = False,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """A job's state, where it is, its per-fold metrics and the version it registered. Exit
    code 1 when it failed or was cancelled."""
    with http.client(api_url) as c:
        job = follow.follow(c, job_id) if wait else http.check(c.get(f"/jobs/{job_id}"))
        version = None if json else follow.registered(c, job)
    if json:
        emit_json(job)
        follow.refuse_unsuccessful(job)
        return
    if not wait:
        _describe(job)
    follow.outcome(job, version)


def _describe(job: dict[str, Any]) -> None:
    console.print(
        f"job {job['id']}: {job['state']}, model {job['model_name']}, attempt {job['attempt']}"
        + (f", worker {job['worker']}" if job.get("worker") else "")
    )
    times = [
        f"{label} {when(job.get(key))}"
        for label, key in (
            ("created", "created_at"),
            ("started", "started_at"),
            ("finished", "finished_at"),
        )
        if job.get(key)
    ]
    console.print(", ".join(times))
    now = follow.where(job)
    if now and job["state"] == JobState.RUNNING:
        console.print(f"now: {now}")


@app.command("list")
def list_(
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many, newest first.")] = 0,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Jobs, newest first."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if state is not None:
        params["state"] = state.value
    with http.client(api_url) as c:
        page = http.check(c.get("/jobs", params=params))
    if json:
        emit_json(page)
        return
    table = Table("id", "model", "state", "attempt", "created", "version")
    for j in page["items"]:
        table.add_row(
            j["id"],
            j["model_name"],
            j["state"],
            str(j["attempt"]),
            when(j["created_at"]),
            "" if j.get("model_version") is None else str(j["model_version"]),
        )
    console.print(table)
    if len(page["items"]) == limit:
        console.print(f"more with --offset {offset + limit}")


@app.command("cancel")
def cancel(job_id: str, json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """Cancel a queued or running job: one's own, or any with an admin key."""
    with http.client(api_url) as c:
        job = http.check(c.post(f"/jobs/{job_id}/cancel"))
    if json:
        emit_json(job)
        return
    console.print(f"job {job_id}: {job['state']}")


@app.command("history")
def history(job_id: str, json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """Per-epoch curves so far: epochs run and the last values of each fold and the refit."""
    with http.client(api_url) as c:
        data = http.check(c.get(f"/jobs/{job_id}/history"))
    if json:
        emit_json(data)
        return
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
