"""registry/jobs.py: job states, claims, heartbeats, folds, and recovery by the sweeper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.vocabulary import JobState
from registry import jobs, views
from registry.errors import InvalidState, JobNotFound
from registry.models import JobEvent, TrainingJob
from tests.factories import make_job


def _age_heartbeat(session: Session, job_id: str, seconds: float) -> None:
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id)
        .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=seconds))
    )


def test_job_is_queued_with_an_event(session: Session) -> None:
    job = make_job(session)
    assert job.state == "queued"
    states = session.scalars(select(JobEvent.state).where(JobEvent.job_id == job.id)).all()
    assert states == ["queued"]
    assert job.created_at.tzinfo is not None


def test_get_missing_job_names_the_id(session: Session) -> None:
    with pytest.raises(JobNotFound, match="no training job with id 'nope'") as exc:
        jobs.get_job(session, job_id="nope")
    assert exc.value.code == "job_not_found"


def test_only_one_claim_wins(session: Session) -> None:
    job = make_job(session)
    first = jobs.claim_job(session, job_id=job.id, worker="w1")
    second = jobs.claim_job(session, job_id=job.id, worker="w2")
    assert first is not None
    assert first.state == "running"
    assert first.attempt == 1
    assert first.worker == "w1"
    assert second is None


def test_heartbeat_and_finish(session: Session) -> None:
    job = make_job(session)
    jobs.claim_job(session, job_id=job.id, worker="w1")
    assert jobs.heartbeat(session, job_id=job.id, attempt=1, progress={"fold": 1})
    assert jobs.finish_job(session, job_id=job.id, attempt=1, state="succeeded")
    # A finished job takes no more heartbeats and cannot finish twice.
    assert not jobs.heartbeat(session, job_id=job.id, attempt=1)
    assert not jobs.finish_job(session, job_id=job.id, attempt=1, state="failed", reason="late")
    session.expire_all()
    row = jobs.get_job(session, job_id=job.id)
    assert row.state == "succeeded"
    assert row.finished_at is not None
    assert [e.state for e in row.events] == ["queued", "running", "succeeded"]


def test_finish_refuses_a_non_terminal_state(session: Session) -> None:
    job = make_job(session)
    with pytest.raises(InvalidState, match="not a terminal state"):
        jobs.finish_job(session, job_id=job.id, attempt=1, state="queued")


def test_cancel_queued_and_running_but_not_finished(session: Session) -> None:
    queued = make_job(session)
    assert jobs.cancel_job(session, job_id=queued.id)
    running = make_job(session)
    jobs.claim_job(session, job_id=running.id, worker="w")
    assert jobs.cancel_job(session, job_id=running.id)
    # The worker's next heartbeat learns that the job is no longer running.
    assert not jobs.heartbeat(session, job_id=running.id, attempt=1)
    assert not jobs.cancel_job(session, job_id=running.id)


def test_sweeper_requeues_a_job_whose_worker_died_then_gives_up(session: Session) -> None:
    job = make_job(session)
    jobs.claim_job(session, job_id=job.id, worker="w1")
    _age_heartbeat(session, job.id, 300)
    resend = jobs.sweep_stale_jobs(
        session,
        heartbeat_timeout=timedelta(seconds=60),
        max_attempts=2,
        requeue_after=timedelta(minutes=10),
    )
    assert job.id in resend
    session.expire_all()
    assert jobs.get_job(session, job_id=job.id).state == "queued"
    # Second attempt dies too: with max_attempts=2 the job fails with a reason.
    jobs.claim_job(session, job_id=job.id, worker="w2")
    _age_heartbeat(session, job.id, 300)
    resend = jobs.sweep_stale_jobs(
        session,
        heartbeat_timeout=timedelta(seconds=60),
        max_attempts=2,
        requeue_after=timedelta(minutes=10),
    )
    assert job.id not in resend
    session.expire_all()
    failed = jobs.get_job(session, job_id=job.id)
    assert failed.state == "failed"
    assert failed.reason is not None
    assert "stopped sending heartbeats" in failed.reason


def test_sweeper_leaves_a_live_job_alone(session: Session) -> None:
    job = make_job(session)
    jobs.claim_job(session, job_id=job.id, worker="w1")
    resend = jobs.sweep_stale_jobs(
        session,
        heartbeat_timeout=timedelta(seconds=60),
        max_attempts=3,
        requeue_after=timedelta(minutes=10),
    )
    assert job.id not in resend
    session.expire_all()
    assert jobs.get_job(session, job_id=job.id).state == "running"


def test_record_fold_replaces_a_retried_fold(session: Session) -> None:
    job = make_job(session)
    jobs.record_fold(
        session, job_id=job.id, fold=1, n_train=8, n_val=2, metrics={"f1": 0.1}, history={}
    )
    jobs.record_fold(
        session, job_id=job.id, fold=1, n_train=8, n_val=2, metrics={"f1": 0.9}, history={}
    )
    folds = views.job(session, job_id=job.id).folds
    assert [(f.fold, f.metrics["f1"]) for f in folds] == [(1, 0.9)]


def _reclaimed(session: Session) -> TrainingJob:
    """A job whose first attempt stopped beating, was taken back by the sweeper and claimed
    again by a second worker, while the first may still be alive (paused, then resumed)."""
    job = make_job(session)
    jobs.claim_job(session, job_id=job.id, worker="w1")
    _age_heartbeat(session, job.id, 300)
    jobs.sweep_stale_jobs(
        session,
        heartbeat_timeout=timedelta(seconds=60),
        max_attempts=3,
        requeue_after=timedelta(seconds=30),
    )
    second = jobs.claim_job(session, job_id=job.id, worker="w2")
    assert second is not None
    assert second.attempt == 2
    return second


def test_a_stale_attempt_writes_nothing_after_the_job_was_claimed_again(session: Session) -> None:
    job = _reclaimed(session)
    jobs.record_fold(
        session,
        job_id=job.id,
        attempt=2,
        fold=1,
        n_train=8,
        n_val=2,
        metrics={"f1": 0.8},
        history={},
        progress={"phase": "cv", "fold": 2},
    )
    _age_heartbeat(session, job.id, 5)
    session.flush()
    before = session.scalar(select(TrainingJob.heartbeat_at).where(TrainingJob.id == job.id))

    assert not jobs.heartbeat(session, job_id=job.id, attempt=1, progress={"phase": "stale"})
    assert (
        jobs.record_fold(
            session,
            job_id=job.id,
            attempt=1,
            fold=1,
            n_train=8,
            n_val=2,
            metrics={"f1": 0.1},
            history={},
            progress={"phase": "stale"},
        )
        is None
    )
    assert not jobs.finish_job(
        session, job_id=job.id, attempt=1, state=JobState.FAILED, reason="zombie"
    )

    session.expire_all()
    row = views.job(session, job_id=job.id)
    assert row.state == "running"
    assert row.attempt == 2
    assert row.worker == "w2"
    assert row.reason is None
    assert row.progress == {"phase": "cv", "fold": 2}
    assert row.heartbeat_at == before
    assert [(f.fold, f.metrics["f1"]) for f in row.folds] == [(1, 0.8)]
    # The attempt that owns the job still writes.
    assert jobs.heartbeat(session, job_id=job.id, attempt=2)
    assert jobs.finish_job(session, job_id=job.id, attempt=2, state=JobState.SUCCEEDED)


def test_a_duplicate_message_finds_the_job_claimed(session: Session) -> None:
    # What the sweeper relies on when it sends a queued job again: the first delivery
    # claims it, any other finds it running and drops, and the attempt is not counted.
    job = make_job(session)
    assert jobs.claim_job(session, job_id=job.id, worker="w1") is not None
    assert jobs.claim_job(session, job_id=job.id, worker="w2") is None
    session.expire_all()
    row = jobs.get_job(session, job_id=job.id)
    assert (row.state, row.attempt, row.worker) == ("running", 1, "w1")


def test_a_queued_job_is_sent_again_once_its_message_is_older_than_the_requeue_interval(
    session: Session,
) -> None:
    job = make_job(session)
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job.id)
        .values(
            created_at=datetime.now(UTC) - timedelta(minutes=5),
            enqueued_at=datetime.now(UTC) - timedelta(seconds=20),
        )
    )

    def sweep() -> list[str]:
        return jobs.sweep_stale_jobs(
            session,
            heartbeat_timeout=timedelta(seconds=60),
            max_attempts=3,
            requeue_after=timedelta(seconds=30),
        )

    assert job.id not in sweep()  # its message went out 20 s ago: give the workers time
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job.id)
        .values(enqueued_at=datetime.now(UTC) - timedelta(seconds=31))
    )
    assert job.id in sweep()
