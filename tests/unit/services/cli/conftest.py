"""The `kiln` commands run through Typer's CliRunner against the real API app in-process
(tests/unit/services/conftest.py's `client`), and registry rows to show."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from core.vocabulary import JobState
from registry import jobs
from registry.db import make_engine
from services import cli
from services.cli import http
from tests.factories import make_job, make_version

Kiln = Callable[..., Result]


def through(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Kiln:
    """Run `kiln ARGS…` with every request going to ``client``, an in-process API."""
    monkeypatch.setattr(http, "client", lambda _url, *_: contextlib.nullcontext(client))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli.app, list(args))

    return run


@pytest.fixture
def kiln(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Kiln:
    return through(client, monkeypatch)


@pytest.fixture
def db(db_url: str) -> Iterator[Session]:
    """A session on the API's database whose commits the API sees."""
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as s:
        yield s
    engine.dispose()


@pytest.fixture
def name(db: Session) -> str:
    """A model with versions 1 (f1 0.705 ± 0.005) and 2 (0.905 ± 0.005), two folds each."""
    model = f"cli-{uuid.uuid4().hex[:8]}"
    for f1 in (0.7, 0.9):
        job = make_job(db, model_name=model)
        for k in range(2):
            jobs.record_fold(
                db,
                job_id=job.id,
                fold=k,
                n_train=4,
                n_val=2,
                metrics={"f1": f1 + 0.01 * k},
                history={},
            )
        make_version(db, job=job, metrics={"f1": {"mean": f1 + 0.005, "std": 0.005}})
    db.commit()
    return model


# Three folds of a finished job: f1 0.8, 0.9, 1.0 (mean 0.9000, population std 0.0816).
FOLD_F1 = (0.8, 0.9, 1.0)


def trained_job(db: Session, *, state: JobState = JobState.SUCCEEDED, register: bool = True) -> Any:
    """A job that ran three folds (with curves) on a worker and ended in ``state``; with
    ``register``, the version it registered, whose metrics are the folds' mean and std."""
    job = make_job(db, model_name=f"cli-job-{uuid.uuid4().hex[:8]}", spec=_spec())
    claimed = jobs.claim_job(db, job_id=job.id, worker="host:1")
    assert claimed is not None
    for k, f1 in enumerate(FOLD_F1, start=1):
        jobs.record_fold(
            db,
            job_id=job.id,
            attempt=claimed.attempt,
            fold=k,
            n_train=8,
            n_val=4,
            metrics={"f1": f1, "accuracy": f1 - 0.05, "confusion_matrix": [[2, 0], [0, 2]]},
            history={
                "loss": [0.7, 0.5, 0.4 - k / 100],
                "val_loss": [0.8, 0.6, 0.5],
                "val_accuracy": [0.5, 0.7, f1],
            },
        )
    if register:
        make_version(
            db,
            job=job,
            metrics={
                "f1": {"mean": 0.9, "std": 0.0816496580927726},
                "accuracy": {"mean": 0.85, "std": 0.0816496580927726},
            },
        )
    reason = "training_diverged: loss is NaN" if state == JobState.FAILED else None
    jobs.finish_job(db, job_id=job.id, attempt=claimed.attempt, state=state, reason=reason)
    db.commit()
    return job


def _spec() -> dict[str, Any]:
    from tests.factories import mlp

    return mlp(4, epochs=3, batch_size=16, k_folds=3, seed=0)
