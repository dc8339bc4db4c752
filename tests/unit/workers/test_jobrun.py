"""workers/jobrun.py: the run any job kind goes through: one claim, a heartbeat that sees
a cancel, failures turned into the job's reason, and results stored with the final state
in one transaction. On a real SQLite registry, with bodies that stand for a job kind."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.vocabulary import JobState
from registry import jobs, views
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.errors import DatasetNotFound
from registry.models import TrainingJob
from tests.factories import make_job, make_version
from tests.logs import configured
from training.errors import Cancelled
from training.hooks import FoldResult
from workers import metrics as worker_metrics
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


def _take_back_and_claim_again(sm: sessionmaker[Session], job_id: str) -> None:
    """What the sweeper and a second worker do while this run's worker is paused: its
    heartbeat goes stale, the job is queued again, and another worker claims it."""
    with sm() as session:
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(minutes=10))
        )
        jobs.sweep_stale_jobs(
            session,
            heartbeat_timeout=timedelta(minutes=1),
            max_attempts=3,
            requeue_after=timedelta(seconds=30),
        )
        assert jobs.claim_job(session, job_id=job_id, worker="other:2") is not None
        session.commit()


def _owned_by_the_second_attempt(sm: sessionmaker[Session], job_id: str) -> None:
    job = _job(sm, job_id)
    assert job.state == JobState.RUNNING  # type: ignore[attr-defined]
    assert job.attempt == 2  # type: ignore[attr-defined]
    assert job.worker == "other:2"  # type: ignore[attr-defined]
    assert job.reason is None  # type: ignore[attr-defined]
    assert job.version_number is None  # type: ignore[attr-defined]


def test_a_stale_attempt_stops_at_its_next_fold_and_stores_nothing(
    sm: sessionmaker[Session], job_id: str
) -> None:
    def body(run: JobRun) -> str:
        _take_back_and_claim_again(sm, job_id)
        # The worker resumes: its next write is refused, and training stops there.
        run.store_fold(FoldResult(1, 8, 2, {"f1": 0.1}, {"loss": [1.0]}))
        return "trained on"

    outcome = run_job(job_id, sm=sm, heartbeat_interval_s=3600, body=body)

    assert outcome == "stopped: attempt 1 superseded (job running, attempt 2)"
    _owned_by_the_second_attempt(sm, job_id)
    assert _job(sm, job_id).folds == []  # type: ignore[attr-defined]


def test_a_stale_attempts_heartbeat_stops_it_and_it_registers_nothing(
    sm: sessionmaker[Session], job_id: str
) -> None:
    def body(run: JobRun) -> str:
        _take_back_and_claim_again(sm, job_id)
        deadline = time.monotonic() + 5
        while not run.stopped():
            assert time.monotonic() < deadline, "the run never saw the take-back"
            time.sleep(BEAT / 5)

        def register(session: Session) -> int:
            return make_version(session, job=jobs.get_job(session, job_id=job_id)).version

        return "kept" if run.succeed(register, progress={}) else "dropped"

    assert run_job(job_id, sm=sm, heartbeat_interval_s=BEAT, body=body) == "dropped"
    _owned_by_the_second_attempt(sm, job_id)


def test_a_stale_attempt_registers_nothing_even_before_it_saw_the_take_back(
    sm: sessionmaker[Session], job_id: str
) -> None:
    def body(run: JobRun) -> str:
        _take_back_and_claim_again(sm, job_id)
        written: list[str] = []

        def register(session: Session) -> int:
            written.append("artifacts")
            return make_version(session, job=jobs.get_job(session, job_id=job_id)).version

        kept = run.succeed(register, progress={})
        assert written == []  # the fence comes before the artifacts are stored
        return "kept" if kept else "dropped"

    assert run_job(job_id, sm=sm, heartbeat_interval_s=3600, body=body) == "dropped"
    _owned_by_the_second_attempt(sm, job_id)


def test_a_stale_attempts_failure_is_not_recorded(sm: sessionmaker[Session], job_id: str) -> None:
    def body(_run: JobRun) -> str:
        _take_back_and_claim_again(sm, job_id)
        raise DatasetNotFound("no dataset with id 'x'")

    assert run_job(job_id, sm=sm, heartbeat_interval_s=3600, body=body).startswith("failed")
    _owned_by_the_second_attempt(sm, job_id)


class Outage:
    """A session factory whose next `fail` sessions lose the database at their first
    statement, as a PostgreSQL restart or a dropped connection does."""

    def __init__(self, sm: sessionmaker[Session]) -> None:
        self._sm = sm
        self.left = 0
        self.error: DBAPIError = OperationalError(
            "UPDATE training_job", {}, Exception("server closed the connection unexpectedly")
        )

    def fail(self, times: int, error: DBAPIError | None = None) -> None:
        self.left = times
        if error is not None:
            self.error = error

    def __call__(self) -> Session:
        session = self._sm()
        if self.left > 0:
            self.left -= 1
            error = self.error

            def lost(*_args: Any, **_kwargs: Any) -> Any:
                raise error

            session.execute = lost  # type: ignore[method-assign]
        return session


@pytest.fixture
def outage(sm: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Outage:
    monkeypatch.setattr("workers.jobrun._FIRST_BACKOFF_S", 0.001)
    return Outage(sm)


def test_a_database_blip_during_a_fold_costs_a_pause_not_the_attempt(
    sm: sessionmaker[Session], job_id: str, outage: Outage
) -> None:
    def body(run: JobRun) -> str:
        run.track(Progress(n_folds=2, epochs=1))
        outage.fail(3)
        run.store_fold(FoldResult(1, 8, 2, {"f1": 0.5}, {"loss": [0.5]}))
        assert outage.left == 0
        outage.fail(2)
        run.beat()
        run.store_fold(FoldResult(2, 8, 2, {"f1": 0.7}, {"loss": [0.4]}))
        outage.fail(2)
        kept = run.succeed(
            lambda session: make_version(session, job=jobs.get_job(session, job_id=job_id)),
            progress={},
        )
        return "kept" if kept else "dropped"

    outcome = run_job(
        job_id,
        sm=outage,  # type: ignore[arg-type]
        heartbeat_interval_s=3600,
        body=body,
        db_retry_s=30,
    )

    job = _job(sm, job_id)
    assert outcome == "kept"
    assert job.state == JobState.SUCCEEDED  # type: ignore[attr-defined]
    assert job.attempt == 1  # type: ignore[attr-defined]
    assert [f.fold for f in job.folds] == [1, 2]  # type: ignore[attr-defined]
    assert job.version_number == 1  # type: ignore[attr-defined]


def test_a_longer_outage_gives_up_and_leaves_the_job_to_the_sweeper(
    sm: sessionmaker[Session], job_id: str, outage: Outage
) -> None:
    def body(run: JobRun) -> str:
        outage.fail(10**6)
        run.store_fold(FoldResult(1, 8, 2, {"f1": 0.5}, {"loss": [0.5]}))
        return "stored"

    with pytest.raises(OperationalError, match="server closed the connection"):
        run_job(job_id, sm=outage, heartbeat_interval_s=3600, body=body, db_retry_s=0.05)  # type: ignore[arg-type]

    assert outage.left > 0
    job = _job(sm, job_id)
    # Running still: Celery retries the task, and the sweeper takes the job back once its
    # heartbeat is stale.
    assert job.state == JobState.RUNNING  # type: ignore[attr-defined]
    assert job.folds == []  # type: ignore[attr-defined]


def test_an_error_that_is_not_an_outage_is_not_tried_again(
    sm: sessionmaker[Session], job_id: str, outage: Outage
) -> None:
    def body(run: JobRun) -> str:
        outage.fail(1, IntegrityError("INSERT INTO fold_metric", {}, Exception("duplicate")))
        run.store_fold(FoldResult(1, 8, 2, {"f1": 0.5}, {"loss": [0.5]}))
        return "stored"

    outcome = run_job(job_id, sm=outage, heartbeat_interval_s=3600, body=body, db_retry_s=30)  # type: ignore[arg-type]

    # Tried again, the fold would have been stored: the next session works.
    assert outcome.startswith("failed: ")
    job = _job(sm, job_id)
    assert job.folds == []  # type: ignore[attr-defined]
    assert job.reason.startswith("internal_error: IntegrityError")  # type: ignore[attr-defined]


def test_every_line_of_a_job_carries_its_id_the_heartbeats_too(
    sm: sessionmaker[Session], job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logging.getLogger("kiln.worker")
    beat_forever = JobRun._beat_forever

    def beat_and_say_so(run: JobRun) -> None:
        log.info("in the heartbeat thread")
        beat_forever(run)

    monkeypatch.setattr(JobRun, "_beat_forever", beat_and_say_so)

    def body(_run: JobRun) -> str:
        log.info("in the body")
        raise ValueError("boom")

    with configured("worker", log_format="json") as captured:
        run_job(job_id, sm=sm, heartbeat_interval_s=BEAT, body=body)
        log.info("after the job")

    by_message = {line["message"]: line for line in captured.lines()}
    assert by_message["in the body"]["job_id"] == job_id
    assert by_message[f"job {job_id} failed"]["job_id"] == job_id  # run_job's own line
    assert by_message["in the heartbeat thread"]["job_id"] == job_id
    assert by_message["after the job"]["job_id"] is None
    assert {line["process"] for line in by_message.values()} == {"worker"}


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return worker_metrics._registry.get_sample_value(name, labels or {}) or 0.0


def test_every_end_and_every_stored_fold_is_counted(sm: sessionmaker[Session]) -> None:
    with sm() as session:
        ids = [make_job(session, model_name=f"counted-{i}").id for i in range(3)]
        session.commit()
    watched = [
        ("kiln_worker_jobs_total", {"kind": "train", "outcome": "succeeded"}),
        ("kiln_worker_jobs_total", {"kind": "train", "outcome": "failed"}),
        ("kiln_worker_job_failures_total", {"reason": "dataset_not_found"}),
        ("kiln_worker_job_failures_total", {"reason": "internal_error"}),
        ("kiln_worker_fold_duration_seconds_count", {"kind": "train"}),
        ("kiln_worker_fold_duration_seconds_sum", {"kind": "train"}),
    ]
    before = [_sample(name, labels) for name, labels in watched]

    def folds(run: JobRun) -> str:
        assert _sample("kiln_worker_jobs_running") == 1
        run.store_fold(FoldResult(0, 8, 2, {"f1": 0.5}, {}, seconds=1.5))
        run.store_fold(FoldResult(1, 8, 2, {"f1": 0.5}, {}, seconds=2.5))
        return "done"

    def missing(_run: JobRun) -> str:
        raise DatasetNotFound("no dataset with id 'x'")

    def broken(_run: JobRun) -> str:
        raise ValueError("boom")

    for job_id, body in zip(ids, (folds, missing, broken), strict=True):
        run_job(job_id, sm=sm, heartbeat_interval_s=3600, body=body)

    after = [_sample(name, labels) for name, labels in watched]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 2, 1, 1, 2, 4.0]
    assert _sample("kiln_worker_jobs_running") == 0
    with sm() as session:
        stored = views.job(session, job_id=ids[0]).folds
    assert [f.seconds for f in stored] == [1.5, 2.5]
