"""One attempt at one job, from its claim to a terminal state: what every job kind runs in.

`run_job` claims the job row (a redelivered message that finds it claimed does nothing),
starts a heartbeat that also notices when the job stops being `running` (cancelled over
the API, or taken back by the sweeper), runs the job kind's body, and turns what it
raises into the job's failure reason. The body stores its results through the run:
`store_fold` for each fold as it ends, `succeed` for the final rows together with the
terminal state.

Every write is fenced by the attempt the claim made (registry.jobs): a worker that was
paused (SIGSTOP, a frozen VM) while the sweeper gave its job to another attempt writes
nothing once it resumes, and stops at that write as it would for a cancel. Every write is
also tried again, with backoff, while the database is unreachable for up to
`WORKER_DB_RETRY_S`: a short outage during a fold costs a pause, not the attempt.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import logs
from core.errors import KilnError
from core.vocabulary import JobState
from registry import jobs
from registry.models import TrainingJob
from registry.stats import kind_of
from training.errors import Cancelled
from training.hooks import FoldResult
from workers import metrics
from workers.progress import Progress

log = logging.getLogger("kiln.worker")
T = TypeVar("T")

# The first pause before writing again, and the longest; each pause doubles, with jitter
# so that workers that lost the database together do not all come back at once.
_FIRST_BACKOFF_S, _MAX_BACKOFF_S = 0.5, 8.0


def transient(exc: BaseException) -> bool:
    """A database error worth trying again: the server unreachable or restarting, a
    connection dropped under the pool, a SQLite lock held too long."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class JobRun:
    """The claimed job (`job`, a detached row, claimed as `attempt`), its progress and its
    heartbeat.

    The heartbeat thread writes the progress snapshot; `store_fold` writes a fold row and
    the snapshot without that fold's running curves. Both hold one lock, so the database
    holds each curve in exactly one place: running in the job's progress, or finished in
    the fold's row.
    """

    def __init__(
        self,
        sm: sessionmaker[Session],
        job: TrainingJob,
        heartbeat_interval_s: float,
        *,
        db_retry_s: float = 60.0,
    ):
        self.job = job
        self.attempt = job.attempt
        self.progress: Progress | None = None
        self._sm = sm
        self._interval = heartbeat_interval_s
        self._retry_s = db_retry_s
        self._writing = threading.Lock()
        self._lost = threading.Event()
        self._done = threading.Event()
        # A thread starts in an empty context: this one's (the job id) goes with it.
        self._beat = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._beat_forever,),
            name=f"heartbeat-{job.id}",
            daemon=True,
        )

    def stopped(self) -> bool:
        """True once the job is no longer this run's: cancelled, or taken back."""
        return self._lost.is_set()

    def track(self, progress: Progress) -> Progress:
        """Send ``progress`` with every heartbeat from now on."""
        self.progress = progress
        return progress

    def beat(self, *, retry_s: float | None = None) -> None:
        """Write a heartbeat with the progress; ``retry_s``: how long to keep trying while
        the database is unreachable (default: WORKER_DB_RETRY_S)."""
        with self._writing:
            alive = self._write(
                "heartbeat",
                lambda session: jobs.heartbeat(
                    session,
                    job_id=self.job.id,
                    attempt=self.attempt,
                    progress=self.progress.snapshot() if self.progress is not None else None,
                ),
                retry_s=retry_s,
            )
        if not alive:
            self._lost.set()

    def store_fold(self, result: FoldResult) -> None:
        """Store a finished fold, or raise `Cancelled` (nothing stored) when the job is no
        longer this attempt's, so that training stops there."""
        with self._writing:
            if self.progress is not None:
                self.progress.fold_stored(result.fold)
            stored = self._write(
                f"fold {result.fold}",
                lambda session: jobs.record_fold(
                    session,
                    job_id=self.job.id,
                    attempt=self.attempt,
                    fold=result.fold,
                    n_train=result.n_train,
                    n_val=result.n_val,
                    metrics=result.metrics,
                    history=result.history,
                    progress=self.progress.snapshot() if self.progress is not None else None,
                    seconds=result.seconds,
                ),
            )
        if stored is not None:
            metrics.fold_seconds.labels(kind_of(self.job)).observe(result.seconds)
        else:
            self._lost.set()
            raise Cancelled(
                f"job {self.job.id} is no longer attempt {self.attempt}'s (cancelled, or taken "
                f"back); fold {result.fold} was not stored"
            )

    def succeed(self, write: Callable[[Session], T], *, progress: dict[str, object]) -> T | None:
        """Write the job's results with ``write`` and mark it succeeded, in one transaction;
        None (and nothing written) when the job stopped being this run's meanwhile. The
        heartbeat goes on meanwhile: storing a large artifact must not look like a dead
        worker."""
        kept: list[T] = []

        def register(session: Session) -> None:
            kept.clear()  # a retry starts again
            # The fence first, in the same transaction: a stale attempt stores no artifact
            # and registers nothing, and on PostgreSQL the row it locks keeps the sweeper
            # from taking the job back before the commit.
            if not jobs.heartbeat(session, job_id=self.job.id, attempt=self.attempt):
                return
            value = write(session)
            if not jobs.finish_job(
                session,
                job_id=self.job.id,
                attempt=self.attempt,
                state=JobState.SUCCEEDED,
                progress=progress,
            ):
                session.rollback()
                return
            kept.append(value)

        self._write("registration", register)
        if not kept:
            self._lost.set()
            return None
        return kept[0]

    def read(self, read: Callable[[Session], T]) -> T:
        """``read`` in a session of its own (its rows come back detached)."""
        with self._sm() as session:
            return read(session)

    def write(self, what: str, write: Callable[[Session], T]) -> T:
        """``write`` in a transaction of its own, committed, tried again while the database
        is unreachable; a write of the job's own must fence itself by ``attempt``."""
        return self._write(what, write)

    def fail(self, reason: str) -> None:
        """Fail the job with ``reason``; nothing when it is no longer this attempt's (a
        stale attempt's failure is not the job's)."""
        failed = self._write(
            "failure",
            lambda session: jobs.finish_job(
                session,
                job_id=self.job.id,
                attempt=self.attempt,
                state=JobState.FAILED,
                reason=reason,
            ),
        )
        if not failed:
            log.warning(
                "job %s is no longer attempt %d's; its failure was not recorded: %s",
                self.job.id,
                self.attempt,
                reason,
            )

    def outcome_of_stop(self) -> str:
        """What a stop meant, for the log: a cancel, or a take-back."""
        try:
            with self._sm() as session:
                job = jobs.get_job(session, job_id=self.job.id)
                state, attempt = job.state, job.attempt
        except DBAPIError:
            return "stopped"
        if state == JobState.CANCELLED:
            return "cancelled"
        return f"stopped: attempt {self.attempt} superseded (job {state}, attempt {attempt})"

    def __enter__(self) -> JobRun:
        self._beat.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._beat.join(timeout=self._interval + 5)

    def _write(
        self, what: str, write: Callable[[Session], T], *, retry_s: float | None = None
    ) -> T:
        """``write`` in a transaction of its own, committed; tried again with backoff while
        the error is transient, for up to ``retry_s`` (then raised)."""
        deadline = time.monotonic() + (self._retry_s if retry_s is None else retry_s)
        pause = _FIRST_BACKOFF_S
        while True:
            try:
                with self._sm() as session:
                    value = write(session)
                    session.commit()
                    return value
            except DBAPIError as exc:
                left = deadline - time.monotonic()
                if not transient(exc) or left <= 0:
                    raise
                wait = min(left, pause * random.uniform(0.5, 1.0))
                log.warning(
                    "job %s: %s not written (%s); trying again in %.1f s",
                    self.job.id,
                    what,
                    type(exc).__name__,
                    wait,
                )
                time.sleep(wait)
                pause = min(pause * 2, _MAX_BACKOFF_S)

    def _beat_forever(self) -> None:
        while not self._done.wait(self._interval):
            try:
                # One try a beat: the next beat is its retry, for as long as the run lasts.
                self.beat(retry_s=0)
            except DBAPIError as exc:
                if not transient(exc):
                    raise
                log.warning("heartbeat for job %s failed; will try again", self.job.id)


def run_job(
    job_id: str,
    *,
    sm: sessionmaker[Session],
    heartbeat_interval_s: float,
    body: Callable[[JobRun], str],
    db_retry_s: float = 60.0,
) -> str:
    """Run one job to a terminal state with ``body``; return what happened, for the log.

    A `KilnError` from the body fails the job with its code and message; an unexpected
    exception fails it as an internal error; `Cancelled` leaves it as the API (or the
    sweeper) set it; a database that cannot be reached for ``db_retry_s`` leaves it
    running and raises, so Celery retries and the sweeper queues it again once its
    heartbeat is stale.
    """
    token = logs.job_id.set(job_id)  # on every line written for this job, from here on
    try:
        return _run_job(
            job_id,
            sm=sm,
            heartbeat_interval_s=heartbeat_interval_s,
            body=body,
            db_retry_s=db_retry_s,
        )
    finally:
        logs.job_id.reset(token)


def _run_job(
    job_id: str,
    *,
    sm: sessionmaker[Session],
    heartbeat_interval_s: float,
    body: Callable[[JobRun], str],
    db_retry_s: float,
) -> str:
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with sm() as session:
        job = jobs.claim_job(session, job_id=job_id, worker=worker)
        session.commit()
    if job is None:
        # Another delivery of the same message claimed it, or it was cancelled or
        # finished: nothing to do, and acknowledging the message is right.
        return "skipped: not queued"
    kind, started = kind_of(job), time.perf_counter()
    outcome, reason = "succeeded", None
    with (
        JobRun(sm, job, heartbeat_interval_s, db_retry_s=db_retry_s) as run,
        metrics.running.track_inprogress(),
    ):
        try:
            done = body(run)
            # Its results were dropped when the job stopped being this run's meanwhile.
            outcome = "stopped" if run.stopped() else "succeeded"
            return done
        except Cancelled:
            stopped = run.outcome_of_stop()
            outcome = "cancelled" if stopped == "cancelled" else "stopped"
            return stopped
        except KilnError as exc:
            outcome, reason = "failed", exc.code
            run.fail(f"{exc.code}: {exc}")
            return f"failed: {exc}"
        except Exception as exc:
            if isinstance(exc, DBAPIError) and transient(exc):
                outcome = "interrupted"
                raise
            outcome, reason = "failed", "internal_error"
            log.exception("job %s failed", job_id)
            run.fail(f"internal_error: {type(exc).__name__}: {exc}")
            return f"failed: {exc}"
        finally:
            metrics.job_ended(kind, outcome, time.perf_counter() - started, reason)
