"""Broker and worker settings. `REDIS_URL` set: Redis; unset: a broker folder under `KILN_HOME`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry.settings import RegistrySettings
from workers.celery_app import TRAINING_QUEUE


def _usable_cores() -> int:
    # The cores this process may run on (taskset, cpuset), not every core of the host.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kiln_home: Path = Path(".kiln")
    redis_url: str | None = None
    # Longer than the longest training job, so Redis does not hand a running job's
    # message to a second worker (design.md: the default is one hour).
    broker_visibility_timeout_s: int = 12 * 3600

    @property
    def broker_dir(self) -> Path:
        return self.kiln_home.resolve() / "broker"


class WorkerSettings(RegistrySettings, BrokerSettings):
    worker_heartbeat_interval_s: float = 2.0
    # A running job's writes (folds, progress, its result) are tried again with backoff
    # while the registry database is unreachable, for this long, before the attempt is
    # given up; the fold results wait in memory meanwhile. Keep it under the API's
    # JOB_HEARTBEAT_TIMEOUT_S, or the sweeper takes the job back during the wait.
    worker_db_retry_s: float = Field(default=60.0, ge=0)
    # Each job runs in a fresh child process: TensorFlow's memory is returned when it ends.
    worker_max_tasks_per_child: int = 1
    worker_concurrency: int = 1
    # Folds of one job train in this many spawned processes at once (1: one after another
    # in the job's process). Each pins TensorFlow to one thread, so one per core.
    worker_fold_processes: int = Field(default_factory=_usable_cores, ge=1)
    # Celery queues this worker consumes, comma-separated: "training", "training-gpu" for
    # a GPU node, or both.
    worker_queues: str = TRAINING_QUEUE
    # Prometheus metrics of this worker's jobs (workers/metrics.py), served by its main
    # process for all its pool children; 0: none. Each worker on one machine needs its
    # own port (`kiln up` gives its workers this port, the next one, ...).
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
