"""registry.stats on SQLite and PostgreSQL: what /metrics reports about jobs.

The database is shared with other tests, so each check compares the figures before and
after this test's own rows."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from core.vocabulary import JobState, failure_code
from registry import jobs
from registry.db import utcnow
from registry.stats import JOB_BUCKETS, job_stats
from tests.factories import make_job, make_version


def _finish(session: Session, state: JobState, seconds: float, reason: str | None = None) -> str:
    job = make_job(session)
    now = utcnow()
    job.state, job.started_at, job.finished_at = state, now, now + timedelta(seconds=seconds)
    job.reason = reason
    session.flush()
    return job.id


def test_jobs_by_state_and_kind_and_failures_by_code(session: Session) -> None:
    before = job_stats(session)
    make_job(session)
    parent = make_version(session)
    make_job(session, retrained_from_id=parent.id)
    _finish(session, JobState.FAILED, 3, "data_mismatch: column 'a' is text")
    _finish(session, JobState.FAILED, 3, "internal_error: ValueError: boom")
    _finish(session, JobState.FAILED, 3, "worker_lost: worker w:1 stopped sending heartbeats")
    _finish(session, JobState.FAILED, 3, "no code here")
    after = job_stats(session)

    def grew(key: tuple[str, str]) -> int:
        return after.jobs.get(key, 0) - before.jobs.get(key, 0)

    # make_version's own job stays queued too: two queued train jobs, one retrain.
    assert grew(("queued", "train")) == 2
    assert grew(("queued", "retrain")) == 1
    assert grew(("failed", "train")) == 4
    for code in ("data_mismatch", "internal_error", "worker_lost", "other"):
        assert after.failures.get(code, 0) - before.failures.get(code, 0) == 1, code


def test_job_durations_fall_in_their_buckets(session: Session) -> None:
    key = ("succeeded", "train")
    before = job_stats(session).job_seconds.get(key)
    for seconds in (0.5, 10, 100):
        _finish(session, JobState.SUCCEEDED, seconds)
    after = job_stats(session).job_seconds[key]
    count0 = before.count if before else 0
    total0 = before.total if before else 0.0
    assert after.count - count0 == 3
    assert abs((after.total - total0) - 110.5) < 1e-3
    under = dict(after.buckets)
    under0 = dict(before.buckets) if before else dict.fromkeys(JOB_BUCKETS, 0)
    assert under[1.0] - under0[1.0] == 1
    assert under[15.0] - under0[15.0] == 2
    assert under[120.0] - under0[120.0] == 3
    # Cumulative, as Prometheus' buckets are.
    counts = [n for _, n in after.buckets]
    assert counts == sorted(counts)
    assert counts[-1] <= after.count


def test_fold_seconds_are_stored_and_summed(session: Session) -> None:
    before = job_stats(session).fold_seconds
    job = make_job(session)
    for fold, seconds in enumerate((0.2, 3.0)):
        jobs.record_fold(
            session,
            job_id=job.id,
            fold=fold,
            n_train=8,
            n_val=2,
            metrics={"f1": 1.0},
            history={},
            seconds=seconds,
        )
    # A fold stored before seconds were kept counts in no histogram.
    jobs.record_fold(
        session, job_id=job.id, fold=2, n_train=8, n_val=2, metrics={"f1": 1.0}, history={}
    )
    after = job_stats(session).fold_seconds
    assert after.count - before.count == 2
    assert abs((after.total - before.total) - 3.2) < 1e-9
    assert dict(after.buckets)[0.25] - dict(before.buckets)[0.25] == 1


def test_failure_code_reads_the_prefix_only() -> None:
    assert failure_code("spec_invalid: layer 2: units must be > 0") == "spec_invalid"
    assert failure_code("Traceback: no") == "other"
    assert failure_code(None) == "other"
    assert failure_code("worker_lost:no space") == "other"
