"""The Celery tasks: thin bindings of task names to job kinds (workers/training_job.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry.artifacts import ArtifactStore
from workers.celery_app import TASK_TRAIN
from workers.training_job import run_training_job

log = logging.getLogger("kiln.worker")


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
        outcome = run_training_job(
            job_id,
            sm=sm_factory(),
            store=store_factory(),
            heartbeat_interval_s=heartbeat_interval_s,
            fold_processes=fold_processes,
            db_retry_s=db_retry_s,
        )
        log.info("job %s: %s", job_id, outcome)
        return outcome


__all__ = ["register_tasks"]
