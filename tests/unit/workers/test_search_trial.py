"""workers/search_trial.py with registry.searches: a search's trials run in this process
(Celery is not involved; each trial is what the task runs), Optuna's study in the same
SQLite registry, and the leaderboard read back over the API."""

from __future__ import annotations

from typing import Any

import optuna
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.vocabulary import ACTIVE_STATES
from registry import searches
from registry.artifacts import LocalArtifactStore
from registry.db import make_engine, make_sessionmaker
from registry.models import TrainingJob
from services.settings import ApiSettings
from tests.factories import mlp
from workers.training_job import run_training_job

BASE = mlp(4, epochs=4, batch_size=64, k_folds=3, seed=3)


def drive(settings: ApiSettings, search_id: str) -> list[str]:
    """Run the search's queued jobs one at a time, advancing it after each trial, as the
    workers would; what each run said."""
    sm = make_sessionmaker(make_engine(settings.database_url))
    store = LocalArtifactStore(settings.artifact_root)
    said = []
    while True:
        with sm() as session:
            queued = session.scalars(
                select(TrainingJob.id)
                .where(TrainingJob.search_id == search_id, TrainingJob.state.in_(ACTIVE_STATES))
                .order_by(TrainingJob.created_at)
            ).all()
        if not queued:
            return said
        said.append(run_training_job(queued[0], sm=sm, store=store, heartbeat_interval_s=1.0))
        with sm() as session:
            searches.advance(session, search_id=search_id)
            session.commit()


def submit(client: TestClient, **changes: Any) -> dict[str, Any]:
    body = {
        "model_name": "searched",
        "dataset": "sklearn:breast_cancer",
        "spec": BASE,
        "space": {"units": [2, 8], "learning_rate": {"low": 0.001, "high": 0.05, "log": True}},
        "objective": {"metric": "f1"},
        "budget": {"trials": 3, "parallel": 2, "wall_s": 600},
        "options": {"seed": 1, "prune": False},
    } | changes
    resp = client.post("/searches", json=body)
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def test_a_search_ranks_its_trials_on_shared_folds_and_registers_the_best(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, settings = own_api
    accepted = submit(client)
    first = client.get(accepted["links"]["self"]).json()
    assert first["state"] == "running"
    assert [t["state"] for t in first["leaderboard"]] == ["queued", "queued"]

    said = drive(settings, accepted["id"])
    assert len(said) == 4, said  # three trials, then the refit

    search = client.get(accepted["links"]["self"]).json()
    assert search["state"] == "succeeded", search
    board = search["leaderboard"]
    assert [t["state"] for t in board] == ["complete"] * 3
    objectives = [t["objective"] for t in board]
    assert objectives == sorted(objectives, reverse=True)
    for t in board:
        f1 = [f["metrics"]["f1"] for f in t["folds"]]
        assert len(f1) == 3
        assert abs(t["metrics"]["f1"]["mean"] - sum(f1) / 3) < 1e-9
        assert t["objective"] == t["metrics"]["f1"]["mean"]
        assert set(t["params"]) == {"units", "learning_rate"}
        assert t["folds_sha256"] == search["folds_sha256"] is not None
    assert len({t["params"]["learning_rate"] for t in board}) == 3
    assert search["best_trial"] == board[0]["trial"]
    assert search["fold_fits"] == 9

    # The refit is a training job whose version's spec is the best trial's.
    refit = search["refit"]
    assert refit["state"] == "succeeded"
    assert refit["model_version"] == 1
    job = client.get(refit["links"]["job"]).json()
    assert job["search_id"] == accepted["id"]
    assert job["trial"] == board[0]["trial"]
    assert job["folds_sha256"] == search["folds_sha256"]
    version = client.get(refit["links"]["model_version"]).json()
    best = client.get(f"/jobs/{board[0]['job_id']}").json()
    assert version["spec"] == best["spec"]
    assert best["spec"]["layers"][0]["units"] == board[0]["params"]["units"]

    # Optuna's study lives in the registry database and agrees with the leaderboard.
    study = optuna.load_study(
        study_name=f"kiln-search-{accepted['id']}", storage=settings.database_url
    )
    assert len(study.trials) == 3
    assert abs(study.best_value - board[0]["objective"]) < 1e-12


def test_cancel_stops_the_search_and_its_queued_trials(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, settings = own_api
    accepted = submit(client)
    resp = client.post(f"/searches/{accepted['id']}/cancel")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["state"] == "cancelled"
    assert [t["state"] for t in body["leaderboard"]] == ["cancelled", "cancelled"]
    assert drive(settings, accepted["id"]) == []
    again = client.post(f"/searches/{accepted['id']}/cancel")
    assert again.status_code == 409
