"""workers/jobrun.py: the run any job kind goes through: one claim, a heartbeat that sees
a cancel, failures turned into the job's reason, and results stored with the final state
in one transaction. On a real SQLite registry, with bodies that stand for a job kind."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.vocabulary import JobState
from registry import jobs, views
from registry.db import make_engine, make_sessionmaker
from registry.errors import DatasetNotFound
from tests.factories import make_job, make_version
from training.errors import Cancelled
from training.hooks import FoldResult
from workers.jobrun import JobRun, run_job
from workers.progress import Progress

BEAT = 0.05


@pytest.fixture
def sm(own_db: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(own_db)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def job_id(sm: sessionmaker[Session]) -> str:
    with sm() as session:
        job = make_job(session, model_name="run")
        session.commit()
        return job.id


def _job(sm: sessionmaker[Session], job_id: str) -> object:
    with sm() as session:
        return views.job(session, job_id=job_id)


def test_a_domain_error_fails_the_job_with_its_code_and_words(
    sm: sessionmaker[Session], job_id: str
) -> None:
    def body(_run: JobRun) -> str:
        raise DatasetNotFound("no dataset with id 'x'")

    outcome = run_job(job_id, sm=sm, heartbeat_interval_s=BEAT, body=body)

    job = _job(sm, job_id)
    assert outcome == "failed: no dataset with id 'x'"
    assert job.state == JobState.FAILED  # type: ignore[attr-defined]
    assert job.reason == "dataset_not_found: no dataset with id 'x'"  # type: ignore[attr-defined]
    assert [e.state for e in job.events] == ["queued", "running", "failed"]  # type: ignore[attr-defined]


def test_an_unexpected_error_fails_the_job_as_internal(
    sm: sessionmaker[Session], job_id: str
) -> None:
    def body(_run: JobRun) -> str:
        raise ValueError("boom")

    assert run_job(job_id, sm=sm, heartbeat_interval_s=BEAT, body=body) == "failed: boom"
    assert _job(sm, job_id).reason == "internal_error: ValueError: boom"  # type: ignore[attr-defined]


def test_a_job_that_is_not_queued_is_not_run_again(sm: sessionmaker[Session], job_id: str) -> None:
    with sm() as session:
        jobs.claim_job(session, job_id=job_id, worker="other:1")
        session.commit()
    ran: list[str] = []

    outcome = run_job(
        job_id, sm=sm, heartbeat_interval_s=BEAT, body=lambda _run: ran.append("x") or ""
    )

    assert outcome == "skipped: not queued"
    assert ran == []
    assert _job(sm, job_id).worker == "other:1"  # type: ignore[attr-defined]


def test_a_cancel_reaches_the_body_at_the_next_heartbeat(
    sm: sessionmaker[Session], job_id: str
) -> None:
    def body(run: JobRun) -> str:
        with sm() as session:
            jobs.cancel_job(session, job_id=job_id)  # what POST /jobs/{id}/cancel does
            session.commit()
        deadline = time.monotonic() + 5
        while not run.stopped():
            assert time.monotonic() < deadline, "the run never saw the cancel"
            time.sleep(BEAT / 5)
        raise Cancelled("training was cancelled during fold 1")

    assert run_job(job_id, sm=sm, heartbeat_interval_s=BEAT, body=body) == "cancelled"
    job = _job(sm, job_id)
    assert job.state == JobState.CANCELLED  # type: ignore[attr-defined]
    assert job.reason == "cancelled by request"  # type: ignore[attr-defined]


def test_a_fold_curve_is_in_one_place_at_a_time(sm: sessionmaker[Session], job_id: str) -> None:
    seen: dict[str, object] = {}

    def body(run: JobRun) -> str:
        progress = run.track(Progress(n_folds=2, epochs=3))
        for epoch in (1, 2, 3):
            progress.on_epoch("cv", 1, epoch, {"loss": 1.0 / epoch})
            progress.on_epoch("cv", 2, epoch, {"loss": 2.0 / epoch})
        run.beat()
        seen["running"] = _job(sm, job_id).progress["history"]  # type: ignore[attr-defined]
        run.store_fold(FoldResult(1, 8, 2, {"f1": 0.5}, {"loss": [1.0, 0.5, 1 / 3]}))
        job = _job(sm, job_id)
        seen["stored"] = (job.progress["history"], [f.fold for f in job.folds])  # type: ignore[attr-defined]
        return "done"

    run_job(job_id, sm=sm, heartbeat_interval_s=3600, body=body)

    assert set(seen["running"]) == {"1", "2"}  # type: ignore[arg-type]
    history, stored = seen["stored"]  # type: ignore[misc]
    assert set(history) == {"2"}  # fold 1's curve left the progress as its row came in
    assert stored == [1]


def test_results_are_kept_only_when_the_job_is_still_the_runs(
    sm: sessionmaker[Session], job_id: str
) -> None:
    def body(run: JobRun) -> str:
        with sm() as session:
            jobs.cancel_job(session, job_id=job_id)
            session.commit()

        def register(session: Session) -> int:
            return make_version(session, job=jobs.get_job(session, job_id=job_id)).version

        return "kept" if run.succeed(register, progress={}) else "dropped"

    assert run_job(job_id, sm=sm, heartbeat_interval_s=3600, body=body) == "dropped"
    with sm() as session:
        assert views.job(session, job_id=job_id).version_number is None
