"""A worker's Prometheus metrics, in prometheus_client's multiprocess mode.

Jobs run in Celery's pool children (a fresh one per job by default) and folds in spawned
processes, while only the worker's main process lives long enough to answer a scrape. So
every child writes its values to files in PROMETHEUS_MULTIPROC_DIR and the main process
serves their sum on WORKER_METRICS_PORT (docs/decisions/0026). The folds' own processes
count nothing: their results come back to the job's process, which counts them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core import metrics as core_metrics
from registry.stats import FOLD_BUCKETS, JOB_BUCKETS

log = logging.getLogger("kiln.worker")
_registry = CollectorRegistry(auto_describe=True)

jobs = Counter(
    "kiln_worker_jobs",
    "Jobs this worker ended, by kind and outcome (succeeded, failed, cancelled, stopped, "
    "interrupted: the registry was unreachable and the message goes back).",
    ["kind", "outcome"],
    registry=_registry,
)
job_seconds = Histogram(
    "kiln_worker_job_duration_seconds",
    "Time from a job's claim to its end, by kind and outcome.",
    ["kind", "outcome"],
    buckets=JOB_BUCKETS,
    registry=_registry,
)
fold_seconds = Histogram(
    "kiln_worker_fold_duration_seconds",
    "One fold's fit and scoring, by job kind.",
    ["kind"],
    buckets=FOLD_BUCKETS,
    registry=_registry,
)
failures = Counter(
    "kiln_worker_job_failures",
    "Failed jobs by the code their reason starts with.",
    ["reason"],
    registry=_registry,
)
running = Gauge(
    "kiln_worker_jobs_running",
    "Jobs running now in this worker's processes.",
    registry=_registry,
    multiprocess_mode="livesum",
)


def job_ended(kind: str, outcome: str, seconds: float, reason: str | None = None) -> None:
    jobs.labels(kind, outcome).inc()
    job_seconds.labels(kind, outcome).observe(seconds)
    if reason is not None:
        failures.labels(reason).inc()


def serve(port: int, host: str) -> None:
    """Serve every process's metrics on ``port`` from this (the main) process; a port in
    use is a warning, not a worker that does not start."""
    try:
        start_http_server(port, addr=host, registry=core_metrics.scrape_registry(_registry))
    except OSError as exc:
        log.warning("worker metrics not served: port %d: %s (WORKER_METRICS_PORT)", port, exc)
        return
    log.info("worker metrics on http://%s:%d/metrics", host, port)


def process_exited(**_: Any) -> None:
    """A pool child's live gauges leave with it (Celery's worker_process_shutdown)."""
    core_metrics.process_exited(os.getpid())
