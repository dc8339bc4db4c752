"""The Celery tasks: thin bindings of task names to job kinds (workers/training_job.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import Token

from celery import Celery
from celery.signals import task_postrun, task_prerun
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import logs
from registry import jobs, searches
from registry.artifacts import ArtifactStore
from registry.models import TrainingJob
from workers.celery_app import TASK_TRAIN, queue_for
from workers.training_job import run_training_job

log = logging.getLogger("kiln.worker")


def advance_search(app: Celery, sm: sessionmaker[Session], job_id: str) -> None:
    """After a search's trial ends (whatever its outcome): queue the next trials, or the
    best one's refit, and send them (registry.searches.advance)."""
    with sm() as session:
        job = session.get(TrainingJob, job_id)
        if job is None or job.kind != "trial" or job.search_id is None:
            return
        queued = searches.advance(session, search_id=job.search_id)
        session.commit()
        send_jobs(app, session, queued)


def send_jobs(app: Celery, session: Session, queued: list[TrainingJob]) -> None:
    """Send committed jobs; one the broker refused stays queued for the sweeper to send."""
    for job in queued:
        try:
            app.send_task(TASK_TRAIN, args=[job.id], queue=queue_for(job.spec))
        except Exception:
            log.warning("could not send job %s; the sweeper sends it later", job.id, exc_info=True)
            jobs.mark_enqueued(session, job_id=job.id, sent=False)
            session.commit()


def register_tasks(
    app: Celery,
    *,
    sm_factory: Callable[[], sessionmaker[Session]],
    store_factory: Callable[[], ArtifactStore],
    heartbeat_interval_s: float,
    fold_processes: int = 1,
    db_retry_s: float = 60.0,
) -> None:
    """Bind the tasks to `app`. Factories run in the child process, after the fork."""

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_TRAIN,
        # The registry unreachable before the claim: try again later. After the claim the
        # job stays running, and the sweeper queues it again once its heartbeat is stale.
        autoretry_for=(OperationalError,),
        retry_backoff=True,
        retry_jitter=True,
        max_retries=5,
    )
    def train(job_id: str) -> str:
        sm = sm_factory()
        outcome = run_training_job(
            job_id,
            sm=sm,
            store=store_factory(),
            heartbeat_interval_s=heartbeat_interval_s,
            fold_processes=fold_processes,
            db_retry_s=db_retry_s,
        )
        log.info("job %s: %s", job_id, outcome)
        advance_search(app, sm, job_id)
        return outcome

    # The job id on every line of the task's run, Celery's own "succeeded" line included
    # (run_job sets it too, for callers outside Celery).
    running: dict[str, Token[str | None]] = {}

    def task_started(task_id: str, args: tuple[object, ...], **_: object) -> None:
        running[task_id] = logs.job_id.set(str(args[0]))

    def task_ended(task_id: str, **_: object) -> None:
        token = running.pop(task_id, None)
        if token is not None:
            logs.job_id.reset(token)

    task_prerun.connect(task_started, sender=train, weak=False)
    task_postrun.connect(task_ended, sender=train, weak=False)


__all__ = ["register_tasks"]
