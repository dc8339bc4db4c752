"""One attempt at one job, from its claim to a terminal state: what every job kind runs in.

`run_job` claims the job row (a redelivered message that finds it claimed does nothing),
starts a heartbeat that also notices when the job stops being `running` (cancelled over
the API, or taken back by the sweeper), runs the job kind's body, and turns what it
raises into the job's failure reason. The body stores its results through the run:
`store_fold` for each fold as it ends, `succeed` for the final rows together with the
terminal state.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import KilnError
from core.vocabulary import JobState
from registry import jobs
from registry.models import TrainingJob
from training.errors import Cancelled
from training.hooks import FoldResult
from workers.progress import Progress

log = logging.getLogger("kiln.worker")
T = TypeVar("T")


class JobRun:
    """The claimed job (`job`, a detached row), its progress and its heartbeat.

    The heartbeat thread writes the progress snapshot; `store_fold` writes a fold row and
    the snapshot without that fold's running curves. Both hold one lock, so the database
    holds each curve in exactly one place: running in the job's progress, or finished in
    the fold's row.
    """

    def __init__(self, sm: sessionmaker[Session], job: TrainingJob, heartbeat_interval_s: float):
        self.job = job
        self.progress: Progress | None = None
        self._sm = sm
        self._interval = heartbeat_interval_s
        self._writing = threading.Lock()
        self._lost = threading.Event()
        self._done = threading.Event()
        self._beat = threading.Thread(
            target=self._beat_forever, name=f"heartbeat-{job.id}", daemon=True
        )

    def stopped(self) -> bool:
        """True once the job is no longer this run's: cancelled, or taken back."""
        return self._lost.is_set()

    def track(self, progress: Progress) -> Progress:
        """Send ``progress`` with every heartbeat from now on."""
        self.progress = progress
        return progress

    def beat(self) -> None:
        with self._writing, self._sm() as session:
            snapshot = self.progress.snapshot() if self.progress is not None else None
            alive = jobs.heartbeat(session, job_id=self.job.id, progress=snapshot)
            session.commit()
        if not alive:
            self._lost.set()

    def store_fold(self, result: FoldResult) -> None:
        with self._writing, self._sm() as session:
            snapshot = None
            if self.progress is not None:
                self.progress.fold_stored(result.fold)
                snapshot = self.progress.snapshot()
            jobs.record_fold(
                session,
                job_id=self.job.id,
                fold=result.fold,
                n_train=result.n_train,
                n_val=result.n_val,
                metrics=result.metrics,
                history=result.history,
                progress=snapshot,
            )
            session.commit()

    def succeed(self, write: Callable[[Session], T], *, progress: dict[str, object]) -> T | None:
        """Write the job's results with ``write`` and mark it succeeded, in one transaction;
        None (and nothing written) when the job stopped being this run's meanwhile. The
        heartbeat goes on meanwhile: storing a large artifact must not look like a dead
        worker."""
        with self._sm() as session:
            value = write(session)
            if not jobs.finish_job(
                session, job_id=self.job.id, state=JobState.SUCCEEDED, progress=progress
            ):
                session.rollback()
                return None
            session.commit()
            return value

    def fail(self, reason: str) -> None:
        with self._sm() as session:
            jobs.finish_job(session, job_id=self.job.id, state=JobState.FAILED, reason=reason)
            session.commit()

    def __enter__(self) -> JobRun:
        self._beat.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._beat.join(timeout=self._interval + 5)

    def _beat_forever(self) -> None:
        while not self._done.wait(self._interval):
            try:
                self.beat()
            except OperationalError:
                log.warning("heartbeat for job %s failed; will try again", self.job.id)


def run_job(
    job_id: str,
    *,
    sm: sessionmaker[Session],
    heartbeat_interval_s: float,
    body: Callable[[JobRun], str],
) -> str:
    """Run one job to a terminal state with ``body``; return what happened, for the log.

    A `KilnError` from the body fails the job with its code and message; an unexpected
    exception fails it as an internal error; `Cancelled` leaves it as the API set it; a
    database that cannot be reached leaves it running and raises, so Celery retries and
    the sweeper queues it again once its heartbeat is stale.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with sm() as session:
        job = jobs.claim_job(session, job_id=job_id, worker=worker)
        session.commit()
    if job is None:
        # Another delivery of the same message claimed it, or it was cancelled or
        # finished: nothing to do, and acknowledging the message is right.
        return "skipped: not queued"
    with JobRun(sm, job, heartbeat_interval_s) as run:
        try:
            return body(run)
        except Cancelled:
            return "cancelled"
        except KilnError as exc:
            run.fail(f"{exc.code}: {exc}")
            return f"failed: {exc}"
        except OperationalError:
            raise
        except Exception as exc:
            log.exception("job %s failed", job_id)
            run.fail(f"internal_error: {type(exc).__name__}: {exc}")
            return f"failed: {exc}"
