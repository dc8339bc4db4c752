"""The API's Prometheus metrics at /metrics.

This process counts HTTP requests by method, route template and status (`HttpMetrics`;
every process's requests, in multiprocess mode). What the registry and the broker hold is
read at scrape time, so every API replica reports the same figures and none keeps counts
that a restart would lose: jobs by state and kind, failed jobs by the code their reason
starts with, histograms of finished jobs' and folds' durations (registry.stats), and the
messages waiting in each queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import metrics as core_metrics
from registry.stats import Histogram as Counts
from registry.stats import job_stats
from services.api.dispatch import Dispatcher
from workers.celery_app import GPU_QUEUE, TRAINING_QUEUE

log = logging.getLogger("kiln.api")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """This process's request metrics; `scrape` adds the registry's and the broker's."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kiln_api_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kiln_api_request_duration_seconds",
            "Time from a request reaching the app to the end of its response.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def scrape(self, sm: sessionmaker[Session], dispatcher: Dispatcher) -> CollectorRegistry:
        """What /metrics generates its answer from, with ``sm``'s and ``dispatcher``'s."""
        return core_metrics.scrape_registry(
            self.registry, RegistryCollector(sm), QueueCollector(dispatcher)
        )


class HttpMetrics:
    """Pure ASGI middleware: counts every request under its route's template
    (`/jobs/{job_id}`, never the id itself), or "unmatched" when no route took it."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what Starlette answers when the app raises past every handler

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router writes the matched route into the scope it was given.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


class RegistryCollector(Collector):
    """Jobs, failures and durations from the registry database, read at each scrape."""

    def __init__(self, sm: sessionmaker[Session]) -> None:
        self._sm = sm

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("kiln_registry_up", "1 when the registry answered this scrape.")
        try:
            with self._sm() as session:
                stats = job_stats(session)
        except SQLAlchemyError as exc:
            log.warning("metrics: the registry did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "kiln_jobs", "Jobs in the registry by state and kind.", labels=["state", "kind"]
        )
        for (state, kind), n in sorted(stats.jobs.items()):
            jobs.add_metric([state, kind], n)
        yield jobs
        failures = CounterMetricFamily(
            "kiln_job_failures",
            "Failed jobs by the code their reason starts with (worker_lost, internal_error, "
            "a data or spec error's code).",
            labels=["reason"],
        )
        for reason, n in sorted(stats.failures.items()):
            failures.add_metric([reason], n)
        yield failures
        job_seconds = HistogramMetricFamily(
            "kiln_job_duration_seconds",
            "Finished jobs' time from their claim by a worker to their end, by state and kind.",
            labels=["state", "kind"],
        )
        for (state, kind), counts in sorted(stats.job_seconds.items()):
            job_seconds.add_metric([state, kind], _buckets(counts), counts.total)
        yield job_seconds
        fold_seconds = HistogramMetricFamily(
            "kiln_fold_duration_seconds", "Stored folds' fit and scoring time."
        )
        fold_seconds.add_metric([], _buckets(stats.fold_seconds), stats.fold_seconds.total)
        yield fold_seconds


class QueueCollector(Collector):
    """Messages waiting in each training queue, asked of the broker at each scrape."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        depths = self._dispatcher.queue_depths([TRAINING_QUEUE, GPU_QUEUE])
        up = GaugeMetricFamily("kiln_broker_up", "1 when the broker answered this scrape.")
        up.add_metric([], 0 if depths is None else 1)
        yield up
        if depths is None:
            return
        waiting = GaugeMetricFamily(
            "kiln_queue_messages", "Messages waiting in the queue.", labels=["queue"]
        )
        for queue, n in depths.items():
            waiting.add_metric([queue], n)
        yield waiting


def _buckets(counts: Counts) -> list[tuple[str, float]]:
    return [(str(b), float(n)) for b, n in counts.buckets] + [("+Inf", float(counts.count))]
