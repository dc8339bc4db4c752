"""workers/search_trial.py with registry.searches: a search's trials run in this process
(Celery is not involved; each trial is what the task runs), Optuna's study in the same
SQLite registry, and the leaderboard read back over the API."""

from __future__ import annotations

import json
import time
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.vocabulary import ACTIVE_STATES
from registry import searches
from registry.artifacts import LocalArtifactStore
from registry.db import make_engine, make_sessionmaker
from registry.models import TrainingJob
from services.settings import ApiSettings
from tests.factories import mlp
from tests.unit.services.cli.conftest import through
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
    own_api: tuple[TestClient, ApiSettings], monkeypatch: pytest.MonkeyPatch
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

    # kiln searches show: the leaderboard, best first, and the registered version.
    out = through(client, monkeypatch)("searches", "show", accepted["id"], "--top", "2")
    assert out.exit_code == 0, out.output
    rows = [line for line in out.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2
    assert rows[0].split("│")[2].strip() == str(board[0]["trial"])
    assert f"{board[0]['metrics']['f1']['mean']:.4f} ± " in rows[0]
    assert f"units={board[0]['params']['units']}" in rows[0]
    assert f"best trial {board[0]['trial']}: refit job {refit['job_id']} succeeded, version 1" in (
        " ".join(out.stdout.split())
    )


def test_cancel_stops_the_search_and_its_queued_trials(
    own_api: tuple[TestClient, ApiSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings = own_api
    accepted = submit(client)
    out = through(client, monkeypatch)("searches", "cancel", accepted["id"], "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["state"] == "cancelled"
    assert [t["state"] for t in body["leaderboard"]] == ["cancelled", "cancelled"]
    assert drive(settings, accepted["id"]) == []
    again = client.post(f"/searches/{accepted['id']}/cancel")
    assert again.status_code == 409


def test_a_pruned_trial_stops_between_folds_and_a_search_with_none_complete_fails(
    own_api: tuple[TestClient, ApiSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna's pruner decides; what Kiln does with its answer is checked here, with a
    pruner that always says stop."""
    client, settings = own_api
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda _self: True)
    accepted = submit(
        client,
        budget={"trials": 2, "parallel": 1, "wall_s": 600},
        options={"seed": 1, "prune": True},
    )
    said = drive(settings, accepted["id"])
    assert len(said) == 2
    assert all(" pruned" in line for line in said), said
    search = client.get(accepted["links"]["self"]).json()
    assert [(t["state"], len(t["folds"]), t["objective"]) for t in search["leaderboard"]] == [
        ("pruned", 1, None),
        ("pruned", 1, None),
    ]
    assert search["state"] == "failed"
    assert search["reason"] == "no_trial_completed: 2 pruned"
    assert search["refit"] is None
    study = optuna.load_study(
        study_name=f"kiln-search-{accepted['id']}", storage=settings.database_url
    )
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.PRUNED}


@pytest.mark.parametrize(
    ("changes", "pruned"),
    [
        ({}, False),  # an MLP: its folds train together and end together
        ({"early_stopping": {"monitor": "loss", "patience": 50}}, True),  # fold by fold
    ],
    ids=["folds-together", "fold-by-fold"],
)
def test_by_default_only_trials_whose_folds_train_one_by_one_are_pruned(
    own_api: tuple[TestClient, ApiSettings],
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, Any],
    pruned: bool,
) -> None:
    client, settings = own_api
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda _self: True)
    accepted = submit(
        client,
        spec=BASE | changes,
        budget={"trials": 1, "parallel": 1, "wall_s": 600},
        options={"seed": 1, "refit": False},
    )

    drive(settings, accepted["id"])

    (trial,) = client.get(accepted["links"]["self"]).json()["leaderboard"]
    assert (trial["state"], len(trial["folds"])) == (("pruned", 1) if pruned else ("complete", 3))


def test_no_trial_starts_after_the_wall_time(own_api: tuple[TestClient, ApiSettings]) -> None:
    client, settings = own_api
    accepted = submit(client, budget={"trials": 5, "parallel": 2, "wall_s": 0.5})
    time.sleep(1.0)
    said = drive(settings, accepted["id"])
    assert said == ["stopped: the search's wall time had passed"] * 2
    search = client.get(accepted["links"]["self"]).json()
    assert [t["state"] for t in search["leaderboard"]] == ["stopped", "stopped"]
    assert search["state"] == "failed"
    assert search["reason"] == "no_trial_completed: 2 stopped"


def test_a_trial_run_again_after_its_worker_died_asks_optuna_anew(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    """The sweeper queues a trial again when its worker stops beating: the Optuna trial
    the dead attempt asked for is failed, and the new attempt trains a trial of its own."""
    client, settings = own_api
    accepted = submit(client, budget={"trials": 1, "parallel": 1, "wall_s": 600})
    name = f"kiln-search-{accepted['id']}"
    study = optuna.create_study(
        study_name=name, storage=settings.database_url, direction="maximize"
    )
    orphan = study.ask()  # what the dead attempt had asked for
    sm = make_sessionmaker(make_engine(settings.database_url))
    with sm() as session:
        job = session.scalars(
            select(TrainingJob).where(TrainingJob.search_id == accepted["id"])
        ).one()
        job.study_trial, job.params = orphan.number, {"units": 2}
        session.commit()
    said = drive(settings, accepted["id"])
    assert said[0].startswith("trial 1 (Optuna 1) complete"), said
    states = {
        t.number: t.state
        for t in optuna.load_study(study_name=name, storage=settings.database_url).trials
    }
    assert states == {0: optuna.trial.TrialState.FAIL, 1: optuna.trial.TrialState.COMPLETE}
    board = client.get(accepted["links"]["self"]).json()["leaderboard"]
    assert [(t["state"], len(t["folds"])) for t in board] == [("complete", 3)]
