"""Worker entry point: `celery -A workers.worker worker -Q training`.

Settings are read here, once; the parent process never imports TensorFlow.
"""

from __future__ import annotations

import functools

from sqlalchemy.orm import Session, sessionmaker

from registry.artifacts import ArtifactStore, make_artifact_store
from registry.db import make_engine, make_sessionmaker
from workers.celery_app import consumed_queues, make_celery
from workers.settings import WorkerSettings
from workers.tasks import register_tasks

settings = WorkerSettings()


@functools.cache
def _sessionmaker() -> sessionmaker[Session]:
    # Created on first use in the child that runs the job, never shared across a fork.
    return make_sessionmaker(make_engine(settings.database_url))


def _store() -> ArtifactStore:
    return make_artifact_store(settings)


app = make_celery(settings.redis_url, settings.broker_dir, settings.broker_visibility_timeout_s)
app.conf.update(
    worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
    worker_concurrency=settings.worker_concurrency,
    # Without -Q on the command line, a worker consumes every queue in task_queues.
    task_queues=consumed_queues(settings.worker_queues),
)
register_tasks(
    app,
    sm_factory=_sessionmaker,
    store_factory=_store,
    heartbeat_interval_s=settings.worker_heartbeat_interval_s,
    fold_processes=settings.worker_fold_processes,
    db_retry_s=settings.worker_db_retry_s,
)
