"""`kiln searches`: start a model search, follow its leaderboard, cancel it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from services.cli import files, http
from services.cli.http import DEFAULT_API, ApiUrl
from services.cli.output import Json, console, emit_json

app = typer.Typer(help="Model searches (Optuna over k-fold trials).", no_args_is_help=True)
Wait = Annotated[
    bool,
    typer.Option(help="Follow the search until its best trial is registered (or it ends)."),
]
Top = Annotated[int, typer.Option(min=1, help="Rows of the leaderboard to show.")]
ENDED = ("succeeded", "failed", "cancelled")


@app.command("submit")
def submit(
    model: Annotated[str, typer.Option(help="Model name for the best trial's version.")],
    dataset: Annotated[str, typer.Option(help="Dataset id or sklearn:<name>.")],
    search: Annotated[
        Path,
        typer.Option(help='JSON file: {"spec", "space", "objective", "budget", "options"}.'),
    ],
    wait: Wait = False,
    top: Top = 10,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Start a search. With --json: the 202's body, or with --wait the final search."""
    body = {"model_name": model, "dataset": dataset, **files.read_json(search, "--search")}
    with http.client(api_url) as c:
        accepted = http.check(c.post("/searches", json=body))
    if not wait:
        if json:
            emit_json(accepted)
        else:
            console.print(f"search {accepted['id']} queued: {accepted['links']['self']}")
        return
    if not json:
        console.print(f"search {accepted['id']} queued: {accepted['links']['self']}")
    show(str(accepted["id"]), wait=True, top=top, json=json, api_url=api_url)


def done(search: dict[str, Any]) -> bool:
    """Ended, and its refits (if any) ended too."""
    refits = search.get("refits") or []
    return search["state"] in ENDED and all(r["state"] in ENDED for r in refits)


@app.command("show")
def show(
    search_id: str,
    wait: Wait = False,
    top: Top = 10,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """A search's state and leaderboard: each trial's parameters, objective, mean ± std
    over its folds, state and time. Exit code 1 when it failed or was cancelled."""
    with http.client(api_url) as c:
        search = http.check(c.get(f"/searches/{search_id}"))
        said = ""
        while wait and not done(search):
            line = _counts(search)
            if line != said and not json:
                console.print(line)
                said = line
            time.sleep(1.0)
            search = http.check(c.get(f"/searches/{search_id}"))
    if json:
        emit_json(search)
    else:
        describe(search, top=top)
    if search["state"] in ("failed", "cancelled"):
        raise typer.Exit(1)


def _counts(search: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(search["counts"].items()))
    return f"search {search['id']}: {search['state']} ({counts or 'no trials yet'})"


def describe(search: dict[str, Any], *, top: int) -> None:
    objective = search["objective"]
    metric = objective["metric"]
    console.print(
        f"{_counts(search)}; {search['fold_fits']} fold fits; objective {metric} "
        f"({objective['direction']})"
    )
    if search.get("reason"):
        console.print(f"reason: {search['reason']}")
    console.print(leaderboard(search, top=top))
    for place, refit in enumerate(search.get("refits") or [], start=1):
        version = refit.get("model_version")
        registered = f", version {version}" if version is not None else ""
        which = "best trial" if place == 1 else f"#{place}, trial"
        console.print(
            f"{which} {refit['trial']}: refit job {refit['job_id']} {refit['state']}{registered}"
        )


def leaderboard(search: dict[str, Any], *, top: int) -> Table:
    metric = search["objective"]["metric"]
    table = Table("#", "trial", "state", f"{metric} mean ± std", "folds", "params", "s")
    for rank, trial in enumerate(search["leaderboard"][:top], start=1):
        score = trial["metrics"].get(metric)
        table.add_row(
            str(rank),
            str(trial["trial"]),
            trial["state"] + (f": {trial['reason']}" if trial.get("reason") else ""),
            "" if score is None else f"{score['mean']:.4f} ± {score['std']:.4f}",
            str(len(trial["folds"])),
            ", ".join(f"{k}={_short(v)}" for k, v in (trial["params"] or {}).items()),
            "" if trial["seconds"] is None else f"{trial['seconds']:.1f}",
        )
    return table


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many, newest first.")] = 0,
    json: Json = False,
    api_url: ApiUrl = DEFAULT_API,
) -> None:
    """Searches, newest first."""
    with http.client(api_url) as c:
        page = http.check(c.get("/searches", params={"limit": limit, "offset": offset}))
    if json:
        emit_json(page)
        return
    table = Table("id", "model", "state", "trials", "best", "version")
    for s in page["items"]:
        refit = s.get("refit") or {}
        table.add_row(
            s["id"],
            s["model_name"],
            s["state"],
            str(len(s["leaderboard"])),
            "" if s["best_trial"] is None else str(s["best_trial"]),
            "" if refit.get("model_version") is None else str(refit["model_version"]),
        )
    console.print(table)


@app.command("cancel")
def cancel(search_id: str, json: Json = False, api_url: ApiUrl = DEFAULT_API) -> None:
    """Cancel a search: its running trials stop within seconds, no refit is queued."""
    with http.client(api_url) as c:
        search = http.check(c.post(f"/searches/{search_id}/cancel"))
    if json:
        emit_json(search)
        return
    console.print(_counts(search))
