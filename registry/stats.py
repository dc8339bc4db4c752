"""What the registry knows about jobs, summed for metrics: jobs by state and kind, failures
by the code their reason starts with, and histograms of job and fold durations.

Read at scrape time (services/api/metrics.py) with aggregate queries, so every API process
reports the same figures and none keeps counts of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, SQLColumnExpression, case, cast, func, select
from sqlalchemy.orm import Session

from core.vocabulary import JobState, failure_code
from registry.models import FoldMetric, TrainingJob

# Jobs run from seconds (a tiny MLP) to hours; folds from under a second up.
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)
FOLD_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_FINISHED = (JobState.SUCCEEDED, JobState.FAILED)


def kind_of(job: TrainingJob) -> str:
    """A job's kind in metrics: "retrain" for a retrain of a version, else "train"."""
    return "train" if job.retrained_from_id is None else "retrain"


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts at each upper bound (Prometheus' `le`), the count and the sum."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    total: float


@dataclass(frozen=True)
class JobStats:
    jobs: dict[tuple[str, str], int]  # (state, kind) → jobs
    failures: dict[str, int]  # reason code → failed jobs
    job_seconds: dict[tuple[str, str], Histogram]  # (state, kind) of finished jobs
    fold_seconds: Histogram


def job_stats(session: Session) -> JobStats:
    kind = case((TrainingJob.retrained_from_id.is_(None), "train"), else_="retrain")
    jobs = {
        (str(state), str(k)): int(n)
        for state, k, n in session.execute(
            select(TrainingJob.state, kind, func.count()).group_by(TrainingJob.state, kind)
        )
    }
    failures: Counter[str] = Counter()
    for reason, n in session.execute(
        select(TrainingJob.reason, func.count())
        .where(TrainingJob.state == JobState.FAILED)
        .group_by(TrainingJob.reason)
    ):
        failures[failure_code(reason)] += int(n)
    seconds = _seconds_between(session, TrainingJob.started_at, TrainingJob.finished_at)
    job_seconds = {
        (str(state), str(k)): _histogram(row, JOB_BUCKETS)
        for state, k, *row in session.execute(
            select(TrainingJob.state, kind, *_histogram_columns(seconds, JOB_BUCKETS))
            .where(TrainingJob.state.in_(_FINISHED), TrainingJob.started_at.is_not(None))
            .group_by(TrainingJob.state, kind)
        )
    }
    fold = session.execute(
        select(*_histogram_columns(FoldMetric.seconds, FOLD_BUCKETS)).where(
            FoldMetric.seconds.is_not(None)
        )
    ).one()
    return JobStats(jobs, dict(failures), job_seconds, _histogram(fold, FOLD_BUCKETS))


def _seconds_between(
    session: Session, start: SQLColumnExpression[Any], end: SQLColumnExpression[Any]
) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    # SQLite keeps the times as ISO text; julianday reads it, in days.
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _histogram_columns(
    value: SQLColumnExpression[Any], buckets: Sequence[float]
) -> list[ColumnElement[Any]]:
    return [
        func.count(value),
        func.coalesce(func.sum(value), 0.0),
        *(func.sum(case((value <= bound, 1), else_=0)) for bound in buckets),
    ]


def _histogram(row: Sequence[Any], buckets: Sequence[float]) -> Histogram:
    count, total, *under = row
    return Histogram(
        tuple(zip(buckets, (int(n or 0) for n in under), strict=True)), int(count), float(total)
    )
