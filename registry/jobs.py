"""Training jobs: states, claims, heartbeats and recovery of jobs whose worker died.

Every state change is a conditional UPDATE so that two workers, or a worker and the
sweeper, can never both move the same job. A worker's writes (heartbeat, folds, its final
state) are fenced by the attempt it claimed: a worker that was paused while its job was
taken back and claimed again writes nothing once it resumes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, delete, func, or_, select, update
from sqlalchemy.orm import Session

from core.vocabulary import ACTIVE_STATES, TERMINAL_STATES, WORKER_LOST, JobState
from registry.db import get_or_raise, utcnow
from registry.errors import InvalidState, JobNotFound
from registry.models import FoldMetric, JobEvent, TrainingJob

QUEUED, RUNNING = JobState.QUEUED, JobState.RUNNING


def _event(
    session: Session, job_id: str, state: JobState, message: str | None, at: datetime
) -> None:
    session.add(JobEvent(job_id=job_id, state=state, message=message, at=at))


def _update(session: Session, job_id: str, *where: ColumnElement[bool], **values: Any) -> bool:
    """UPDATE the job's row where the conditions still hold; whether it did."""
    result = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def _move(
    session: Session,
    job_id: str,
    *where: ColumnElement[bool],
    to: JobState,
    message: str | None,
    at: datetime,
    **values: Any,
) -> bool:
    """Move the job to state ``to`` (and an event row) if it is still where ``where`` says."""
    if not _update(session, job_id, *where, state=to, **values):
        return False
    _event(session, job_id, to, message, at)
    session.flush()
    return True


def add_job(session: Session, job: TrainingJob) -> TrainingJob:
    """Store ``job`` as queued, with its first event."""
    session.add(job)
    session.flush()  # the id, the queued state and the time come from the column defaults
    _event(session, job.id, QUEUED, "accepted", job.created_at)
    session.flush()
    return job


def get_job(session: Session, *, job_id: str) -> TrainingJob:
    return get_or_raise(
        session, TrainingJob, job_id, JobNotFound(f"no training job with id {job_id!r}")
    )


def count_active(session: Session, *, owner: str) -> int:
    """How many of ``owner``'s jobs are queued or running."""
    return (
        session.scalar(
            select(func.count())
            .select_from(TrainingJob)
            .where(TrainingJob.owner == owner, TrainingJob.state.in_(ACTIVE_STATES))
        )
        or 0
    )


def mark_enqueued(session: Session, *, job_id: str, sent: bool = True) -> None:
    """Record that the job's message went out now (``sent``), or that it did not, so the
    sweeper sends it soon."""
    _update(session, job_id, enqueued_at=utcnow() if sent else None)


def claim_job(session: Session, *, job_id: str, worker: str) -> TrainingJob | None:
    """Move a queued job to running for this worker; None if another delivery got it first."""
    now = utcnow()
    claimed = _move(
        session,
        job_id,
        TrainingJob.state == QUEUED,
        to=RUNNING,
        message=f"claimed by {worker}",
        at=now,
        attempt=TrainingJob.attempt + 1,
        worker=worker,
        started_at=now,
        heartbeat_at=now,
        reason=None,
        progress=None,
    )
    if not claimed:
        return None
    job = session.get(TrainingJob, job_id, populate_existing=True)
    assert job is not None
    return job


def _held_by(attempt: int) -> tuple[ColumnElement[bool], ...]:
    # The fence: the job still runs, and under this attempt (claim_job counts them).
    return (TrainingJob.state == RUNNING, TrainingJob.attempt == attempt)


def heartbeat(
    session: Session, *, job_id: str, attempt: int, progress: dict[str, Any] | None = None
) -> bool:
    """Record that attempt ``attempt`` is alive (and where it is). False, and nothing
    written, once the job is no longer running under that attempt: cancelled, finished,
    or taken back by the sweeper (and perhaps claimed again).

    On PostgreSQL the row stays locked until the transaction ends, so a worker can fence
    a longer write with it: a take-back waits, then finds the heartbeat moved.
    """
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = progress
    return _update(session, job_id, *_held_by(attempt), **values)


def record_fold(
    session: Session,
    *,
    job_id: str,
    fold: int,
    n_train: int,
    n_val: int,
    metrics: dict[str, Any],
    history: dict[str, list[float]],
    progress: dict[str, Any] | None = None,
    attempt: int | None = None,
    seconds: float | None = None,
) -> FoldMetric | None:
    """Store a finished fold. ``progress``, the job's progress without this fold's running
    curves, is written in the same transaction, so the curves are in one place at a time.

    With ``attempt`` (a worker's write) the fold is stored only while the job runs under
    that attempt, as a heartbeat; None, and nothing written, otherwise. Without it the row
    is written whatever the job's state (imports, fixtures).
    """
    if attempt is not None:
        if not heartbeat(session, job_id=job_id, attempt=attempt, progress=progress):
            return None
    elif progress is not None:
        _update(session, job_id, progress=progress)
    # A retried attempt trains the folds again: its numbers replace the lost attempt's.
    existing = session.scalars(
        select(FoldMetric).where(FoldMetric.job_id == job_id, FoldMetric.fold == fold)
    ).first()
    if existing is not None:
        session.delete(existing)
        session.flush()
    row = FoldMetric(
        job_id=job_id,
        fold=fold,
        n_train=n_train,
        n_val=n_val,
        metrics=metrics,
        history=history,
        seconds=seconds,
    )
    session.add(row)
    session.flush()
    return row


def set_folds_sha256(session: Session, *, job_id: str, sha256: str | None) -> None:
    """Record which folds the job scored on (training.cv.folds_sha256)."""
    _update(session, job_id, folds_sha256=sha256)


def delete_folds(session: Session, *, job_id: str) -> None:
    """Forget a job's fold rows (a trial that samples new parameters trains new folds)."""
    session.execute(delete(FoldMetric).where(FoldMetric.job_id == job_id))


def finish_job(
    session: Session,
    *,
    job_id: str,
    attempt: int,
    state: JobState,
    reason: str | None = None,
    progress: dict[str, Any] | None = None,
) -> bool:
    """Move a job running under ``attempt`` to a terminal state. False, and nothing
    written, if it was not running under that attempt any more.

    A succeeded job's progress becomes ``progress`` (by default none: its last epoch report
    would read as stale); a failed or cancelled one keeps its last report, and with it
    the per-epoch history of the fits it had not finished.
    """
    if state not in TERMINAL_STATES:
        expected = sorted(s.value for s in TERMINAL_STATES)
        raise InvalidState(f"{state!r} is not a terminal state; expected one of {expected}")
    now = utcnow()
    return _move(
        session,
        job_id,
        *_held_by(attempt),
        to=state,
        message=reason,
        at=now,
        reason=reason,
        finished_at=now,
        heartbeat_at=now,
        **({"progress": progress} if state == JobState.SUCCEEDED else {}),
    )


def sweep_stale_jobs(
    session: Session,
    *,
    heartbeat_timeout: timedelta,
    max_attempts: int,
    requeue_after: timedelta,
) -> list[str]:
    """Recover jobs a dead worker or a lost message left behind; return the ids to send again.

    A running job whose heartbeat is older than `heartbeat_timeout` lost its worker: it is
    queued again while it has attempts left, else failed with that reason. A queued job
    whose message went out longer than `requeue_after` ago (or never went out, because the
    process that accepted it died first or the broker refused it) is sent again. Sending
    twice is harmless: only one delivery can claim a queued job.
    """
    now = utcnow()
    resend = [
        job.id
        for job in session.scalars(
            select(TrainingJob).where(
                TrainingJob.state == RUNNING, TrainingJob.heartbeat_at < now - heartbeat_timeout
            )
        ).all()
        if _take_back(session, job, max_attempts=max_attempts, now=now) == QUEUED
    ]
    lost = session.scalars(
        select(TrainingJob.id).where(
            TrainingJob.state == QUEUED,
            or_(
                TrainingJob.enqueued_at.is_(None),
                TrainingJob.enqueued_at < now - requeue_after,
            ),
            # Give the accepting request time to send its own message first.
            TrainingJob.created_at < now - timedelta(seconds=30),
        )
    ).all()
    resend.extend(job_id for job_id in lost if job_id not in resend)
    session.flush()
    return resend


def _take_back(
    session: Session, job: TrainingJob, *, max_attempts: int, now: datetime
) -> JobState | None:
    """Queue a job whose worker stopped beating again, or fail it on its last attempt;
    the state it moved to, or None when another sweeper moved it first."""
    last_seen = job.heartbeat_at.isoformat() if job.heartbeat_at else "never"
    lost = f"{WORKER_LOST}: worker {job.worker} stopped sending heartbeats (last {last_seen})"
    if job.attempt < max_attempts:
        new_state = QUEUED
        message = f"{lost}; queued again for attempt {job.attempt + 1} of {max_attempts}"
    else:
        new_state = JobState.FAILED
        message = (
            f"{lost} on attempt {job.attempt} of {max_attempts}; the job was given up. A worker "
            "process is dying on it (out of memory?): check the worker logs, then submit it again"
        )
    moved = _move(
        session,
        job.id,
        TrainingJob.state == RUNNING,
        TrainingJob.heartbeat_at == job.heartbeat_at,
        to=new_state,
        message=message,
        at=now,
        reason=None if new_state == QUEUED else message,
        finished_at=now if new_state == JobState.FAILED else None,
        enqueued_at=None,
    )
    return new_state if moved else None


def cancel_job(session: Session, *, job_id: str) -> bool:
    """Cancel a queued or running job; its worker sees it at the next heartbeat."""
    now, why = utcnow(), "cancelled by request"
    return _move(
        session,
        job_id,
        TrainingJob.state.in_(ACTIVE_STATES),
        to=JobState.CANCELLED,
        message=why,
        at=now,
        finished_at=now,
        reason=why,
    )
