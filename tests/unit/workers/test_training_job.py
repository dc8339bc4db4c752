"""workers/training_job.py: the training job in this process, against the API on a real
SQLite registry: the curves a client polls while a job runs, the refit's curves, the test
split's scores stored with the version, and datasets read the way the spec asks (windows
of a time series, images). Celery is not involved: run_training_job is what the task
calls."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from registry import jobs, versions
from registry.artifacts import LocalArtifactStore
from registry.db import make_engine, make_sessionmaker
from services.settings import ApiSettings
from tests.factories import make_dataset, make_job, mlp
from workers.training_job import run_training_job

SPEC = mlp(8, epochs=30, batch_size=16, k_folds=2, seed=1, test_split=0.2)


def test_curves_are_served_while_the_job_runs_and_kept_after(
    own_api: tuple[TestClient, ApiSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings = own_api
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
    from services.cli import http

    monkeypatch.setattr(http, "client", lambda _url: contextlib.nullcontext(client))
    shown = CliRunner().invoke(cli.app, ["jobs", "history", job_id])
    assert shown.exit_code == 0, shown.output
    assert "fold 2" in shown.output
    assert "refit" in shown.output
    assert f"{final['refit']['history']['loss'][-1]:.4f}" in shown.output
    models = CliRunner().invoke(cli.app, ["models", "show", "curves", "1"])
    assert models.exit_code == 0, models.output
    assert f"test ({test['n_test']} rows)" in models.output


def _run(
    sqlite_url: str,
    tmp_path: Path,
    *,
    data: bytes,
    kind: str,
    target: str,
    shape: list[int],
    spec: dict[str, Any],
    class_counts: dict[str, int] | None,
) -> Any:
    engine = make_engine(sqlite_url)
    sm = sessionmaker(engine, expire_on_commit=False)
    store = LocalArtifactStore(tmp_path / "artifacts")
    sha = store.put(data)
    with sm() as session:
        ds = make_dataset(
            session,
            name=f"{kind}.bin",
            sha256=sha,
            size_bytes=len(data),
            target=target,
            n_rows=shape[0],
            columns=[],
            class_counts=class_counts,
            kind=kind,
            shape=shape,
        )
        job = make_job(session, model_name=f"worker-{kind}-{sha[:6]}", dataset_id=ds.id, spec=spec)
        session.commit()
        job_id, model_name = job.id, job.model_name
    outcome = run_training_job(job_id, sm=sm, store=store, heartbeat_interval_s=1.0)
    with sm() as session:
        finished = jobs.get_job(session, job_id=job_id)
        assert finished.state == "succeeded", (outcome, finished.reason)
        mv = versions.get_version(session, model_name=model_name)
        signature, parity = mv.signature, mv.parity
    engine.dispose()
    return signature, parity


def test_a_window_in_the_spec_trains_on_sequences(sqlite_url: str, tmp_path: Path) -> None:
    t = np.arange(60.0)
    frame = pd.DataFrame({"a": np.sin(t / 4), "y": np.cos(t / 4)})
    spec = {
        "task": "regression",
        "loss": "mse",
        "epochs": 1,
        "k_folds": 2,
        "window": {"steps": 4, "horizon": 3},
        "layers": [{"type": "GRU", "units": 3}, {"type": "Dense", "units": 1}],
    }
    sig, parity = _run(
        sqlite_url,
        tmp_path,
        data=frame.to_csv(index=False).encode(),
        kind="table",
        target="y",
        shape=[60, 1],
        spec=spec,
        class_counts=None,
    )
    assert sig["kind"] == "sequence"
    assert sig["inputs"][0]["shape"] == [-1, 4, 2]
    assert sig["window"] == {"steps": 4, "horizon": 3, "target": "y"}
    assert sig["feature_names"] == ["a", "y"]
    assert parity["passed"]
    assert parity["rows"] == 60 - 4 - 3 + 1


def test_an_image_dataset_trains_a_cnn(sqlite_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, size=(24, 6, 6)).astype(np.uint8)
    y = np.array(["cat", "dog"] * 12)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    spec = {
        "task": "binary",
        "loss": "binary_crossentropy",
        "epochs": 1,
        "k_folds": 2,
        "layers": [
            {"type": "Conv2D", "filters": 2, "kernel_size": 3},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
    }
    sig, parity = _run(
        sqlite_url,
        tmp_path,
        data=buffer.getvalue(),
        kind="image",
        target="y",
        shape=[24, 6, 6, 1],
        spec=spec,
        class_counts={"cat": 12, "dog": 12},
    )
    assert sig["kind"] == "image"
    assert sig["inputs"][0]["shape"] == [-1, 6, 6, 1]
    assert sig["class_labels"] == ["cat", "dog"]
    assert sig["feature_names"] is None
    assert parity["passed"]
