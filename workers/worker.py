"""Worker entry point: `celery -A workers.worker worker -Q training`.

Settings are read here, once; the parent process never imports TensorFlow.
"""

from __future__ import annotations

import functools
import os
import tempfile

from celery.signals import setup_logging, worker_init, worker_process_shutdown
from sqlalchemy.orm import Session, sessionmaker

from core.logs import LogSettings, configure
from registry.artifacts import ArtifactStore, make_artifact_store
from registry.db import make_engine, make_sessionmaker
from workers.celery_app import consumed_queues, make_celery
from workers.settings import WorkerSettings

# First: before a task could import TensorFlow (it reads TF_CPP_MIN_LOG_LEVEL once, when
# it loads), and before Celery's own logging setup, which the receiver below turns off.
configure(LogSettings(), process="worker")
settings = WorkerSettings()
if settings.worker_metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # prometheus_client reads it once, when it is first imported (below, with the tasks):
    # the pool's children write their values there, and this process serves their sum.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kiln-worker-metrics-")

from workers import metrics  # noqa: E402
from workers.tasks import register_tasks  # noqa: E402


def _keep_our_logging(**_kwargs: object) -> None:
    """Celery configures no logging of its own when this signal has a receiver: every line
    goes through core.logs, with the job id, in LOG_FORMAT."""


setup_logging.connect(_keep_our_logging)


def _serve_metrics(**_kwargs: object) -> None:
    if settings.worker_metrics_port:
        metrics.serve(settings.worker_metrics_port, settings.worker_metrics_host)


# In the main process before the pool starts; the pool's children leave at their shutdown.
worker_init.connect(_serve_metrics)
worker_process_shutdown.connect(metrics.process_exited)


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
