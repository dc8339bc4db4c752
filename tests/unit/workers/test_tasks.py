"""The training task in this process, against the API on a real SQLite registry: the
curves a client polls while a job runs, the refit's curves, and the test split's scores
stored with the version. Celery is not involved: run_training_job is what the task calls."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry.artifacts import LocalArtifactStore
from registry.db import make_engine, make_sessionmaker
from registry.migrate import upgrade
from services.api.app import create_app
from services.settings import ApiSettings
from workers.tasks import Progress, run_training_job

SPEC: dict[str, Any] = {
    "task": "binary",
    "layers": [
        {"type": "Dense", "units": 8, "activation": "relu"},
        {"type": "Dense", "units": 1, "activation": "sigmoid"},
    ],
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "loss": "binary_crossentropy",
    "epochs": 30,
    "batch_size": 16,
    "k_folds": 2,
    "seed": 1,
    "test_split": 0.2,
}


@pytest.fixture
def own_db(tmp_path: Path) -> str:
    # Its own registry: a built-in dataset materialised by another test's API would point
    # at an artifact in that test's store.
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    upgrade(url)
    return url


@pytest.fixture
def api(tmp_path: Path, own_db: str) -> Iterator[tuple[TestClient, ApiSettings]]:
    settings = ApiSettings(
        kiln_home=tmp_path, database_url=own_db, redis_url=None, job_sweep_interval_s=3600
    )
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_curves_are_served_while_the_job_runs_and_kept_after(
    api: tuple[TestClient, ApiSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings = api
    resp = client.post(
        "/jobs", json={"model_name": "curves", "dataset": "sklearn:breast_cancer", "spec": SPEC}
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    sm = make_sessionmaker(make_engine(settings.database_url))
    outcome: list[str] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            run_training_job(
                job_id,
                sm=sm,
                store=LocalArtifactStore(settings.artifact_root),
                heartbeat_interval_s=0.2,
            )
        )
    )
    worker.start()
    partial = None
    while worker.is_alive():
        history = client.get(f"/jobs/{job_id}/history").json()
        running = [f for f in history["folds"] if not f["done"]]
        if running and 2 <= len(running[0]["history"]["loss"]) < SPEC["epochs"]:
            partial = history
            job = client.get(f"/jobs/{job_id}").json()
            assert job["state"] == "running"
            assert "history" not in job["progress"]
        time.sleep(0.1)
    worker.join()

    assert outcome == ["registered curves version 1"], outcome
    assert partial is not None, "no partial curve was served while the job ran"
    fold = next(f for f in partial["folds"] if not f["done"])
    assert set(fold["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(fold["history"]["loss"]) == len(fold["history"]["val_loss"])

    final = client.get(f"/jobs/{job_id}/history").json()
    assert final["state"] == "succeeded"
    assert [(f["fold"], f["done"]) for f in final["folds"]] == [(1, True), (2, True)]
    assert all(len(f["history"]["loss"]) == SPEC["epochs"] for f in final["folds"])
    assert final["refit"]["done"] is True
    assert len(final["refit"]["history"]["loss"]) == SPEC["epochs"]
    assert "val_loss" not in final["refit"]["history"]
    # The partial curve was the start of the stored one.
    stored = next(f for f in final["folds"] if f["fold"] == fold["fold"])["history"]["loss"]
    assert fold["history"]["loss"] == pytest.approx(stored[: len(fold["history"]["loss"])])

    job = client.get(f"/jobs/{job_id}").json()
    assert job["progress"] is None
    version = client.get("/models/curves/versions/1").json()
    test = version["test_metrics"]
    assert test["n_test"] == round(569 * 0.2)
    assert sum(map(sum, test["confusion_matrix"])) == test["n_test"]
    assert test["accuracy"] > 0.85
    assert {"f1", "specificity", "npv", "log_loss"} <= set(test)
    assert all(f["n_train"] + f["n_val"] == 569 - test["n_test"] for f in version["folds"])

    # The CLI shows the same, through this API.
    from typer.testing import CliRunner

    from services import cli

    monkeypatch.setattr(cli, "_client", lambda _url: contextlib.nullcontext(client))
    shown = CliRunner().invoke(cli.app, ["jobs", "history", job_id])
    assert shown.exit_code == 0, shown.output
    assert "fold 2" in shown.output
    assert "refit" in shown.output
    assert f"{final['refit']['history']['loss'][-1]:.4f}" in shown.output
    models = CliRunner().invoke(cli.app, ["models", "show", "curves", "1"])
    assert models.exit_code == 0, models.output
    assert f"test ({test['n_test']} rows)" in models.output


def test_progress_snapshot_drops_stored_folds_and_rounds_to_float32_precision() -> None:
    progress = Progress(n_folds=2, epochs=3)
    assert progress.snapshot() is None
    progress.on_epoch("cv", 1, 1, {"loss": 0.123456789})
    progress.on_epoch("cv", 2, 1, {"loss": 0.5})
    progress.on_epoch("cv", 1, 2, {"loss": 0.1})

    snap = progress.snapshot()
    assert snap is not None
    assert snap["history"] == {"1": {"loss": [0.1234568, 0.1]}, "2": {"loss": [0.5]}}
    assert (snap["fold"], snap["epoch"], snap["n_folds"]) == (1, 2, 2)
    progress.fold_stored(1)
    progress.on_epoch("refit", None, 1, {"loss": 0.2})
    after = progress.snapshot()
    assert after is not None
    assert set(after["history"]) == {"2", "refit"}
    assert progress.refit_history() == {"loss": [0.2]}
