"""Model searches: each trial is a training job of kind "trial", and `advance` decides
what runs next.

`advance` is called when a search is accepted and after every trial ends, by whichever
process ended it. It starts trials while the budget and the wall time allow, keeping
``budget.parallel`` of them queued or running, and once the last one has ended it names
the best trial and queues the refit that registers it. Its first statement touches the
search's row: on PostgreSQL that row lock, on SQLite the write lock, makes advances of one
search run one at a time, so two trials ending together never start more trials than
the budget holds, and exactly one of them queues the refit.

Sampling is not here: a trial's worker asks Optuna for its parameters when it starts
(workers/search_trial.py), so nothing in this module needs Optuna.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from core.vocabulary import ACTIVE_STATES, JobState
from registry import jobs
from registry.db import get_or_raise, utcnow
from registry.errors import InvalidState, SearchNotFound
from registry.models import Search, TrainingJob


def add_search(session: Session, search: Search) -> list[TrainingJob]:
    """Store ``search`` and queue its first trials; the jobs to send once committed."""
    session.add(search)
    session.flush()
    return advance(session, search_id=search.id)


def get_search(session: Session, *, search_id: str) -> Search:
    return get_or_raise(
        session, Search, search_id, SearchNotFound(f"no search with id {search_id!r}")
    )


_WITH_TRIALS = (
    selectinload(Search.trials).selectinload(TrainingJob.folds),
    selectinload(Search.refits),
)


def view(session: Session, *, search_id: str) -> Search:
    """A search with its trials and their folds, in a constant number of queries."""
    search = session.scalars(
        select(Search).where(Search.id == search_id).options(*_WITH_TRIALS)
    ).first()
    if search is None:
        raise SearchNotFound(f"no search with id {search_id!r}")
    return search


def searches(session: Session, *, limit: int = 50, offset: int = 0) -> list[Search]:
    """A page of searches, newest first, with their trials and folds."""
    return list(
        session.scalars(
            select(Search)
            .order_by(Search.created_at.desc())
            .limit(limit)
            .offset(offset)
            .options(*_WITH_TRIALS)
        ).all()
    )


def active_ids(session: Session) -> list[str]:
    """The searches still queued or running."""
    return list(session.scalars(select(Search.id).where(Search.state.in_(ACTIVE_STATES))).all())


def advance(session: Session, *, search_id: str) -> list[TrainingJob]:
    """Queue the trials (or the refit) that should run now; the jobs to send once the
    caller has committed. Nothing when the search has ended."""
    now = utcnow()
    session.execute(
        update(Search)
        .where(Search.id == search_id)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )
    search = session.get(Search, search_id, populate_existing=True)
    if search is None:
        raise SearchNotFound(f"no search with id {search_id!r}")
    if search.state not in ACTIVE_STATES:
        return []
    trials = list(
        session.scalars(
            select(TrainingJob)
            .where(TrainingJob.search_id == search_id, TrainingJob.kind == "trial")
            # Read under the lock: rows this session holds may be older than that.
            .execution_options(populate_existing=True)
        ).all()
    )
    active = sum(t.state in ACTIVE_STATES for t in trials)
    budget = search.budget
    if now < search.deadline_at and len(trials) < budget["trials"]:
        if search.state == JobState.QUEUED:
            search.state = JobState.RUNNING
        room = min(budget["parallel"] - active, budget["trials"] - len(trials))
        return [_queue_trial(session, search, len(trials) + i + 1) for i in range(max(room, 0))]
    if active:
        return []
    return _finish(session, search, trials)


def _queue_trial(session: Session, search: Search, number: int) -> TrainingJob:
    # The base spec until its worker asks Optuna for the trial's parameters.
    return _queue(session, search, kind="trial", spec=search.spec, trial=number)


def _queue(session: Session, search: Search, **fields: Any) -> TrainingJob:
    """Store a job of ``search`` (a trial or the refit), queued and marked sent."""
    job = TrainingJob(
        model_name=search.model_name,
        dataset_id=search.dataset_id,
        owner=search.owner,
        search_id=search.id,
        **{**fields, "spec": dict(fields["spec"])},
    )
    jobs.add_job(session, job)
    jobs.mark_enqueued(session, job_id=job.id)
    return job


def _finish(session: Session, search: Search, trials: list[TrainingJob]) -> list[TrainingJob]:
    """Every trial has ended: name the best one and queue its refit (and those of the next
    best, up to the options' refit_top), or fail the search."""
    done = [
        t
        for t in trials
        if t.state == JobState.SUCCEEDED and t.outcome == "complete" and t.objective is not None
    ]
    search.finished_at = utcnow()
    if not done:
        search.state = JobState.FAILED
        search.reason = "no_trial_completed: " + _why_none(trials)
        session.flush()
        return []
    sign = 1.0 if search.objective["direction"] == "maximize" else -1.0
    ranked = sorted(done, key=lambda t: (-sign * float(t.objective or 0.0), t.trial or 0))
    search.best_trial = ranked[0].trial
    search.state = JobState.SUCCEEDED
    refits: list[TrainingJob] = []
    if search.options.get("refit", True):
        for trial in ranked[: int(search.options.get("refit_top", 1))]:
            refits.append(
                _queue(
                    session,
                    search,
                    kind="train",
                    spec=trial.spec,
                    trial=trial.trial,
                    params=trial.params,
                )
            )
        search.refit_job_id = refits[0].id
    session.flush()
    return refits


def _why_none(trials: list[TrainingJob]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        label = t.outcome if t.state == JobState.SUCCEEDED else str(t.state)
        counts[label or "unknown"] = counts.get(label or "unknown", 0) + 1
    first_failure = next((t.reason for t in trials if t.state == JobState.FAILED), None)
    summary = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    return f"{summary}" + (f"; the first failure: {first_failure}" if first_failure else "")


def cancel_search(session: Session, *, search_id: str) -> bool:
    """Cancel an active search and every trial (and refit) of it still queued or running;
    their workers stop at their next heartbeat. False when the search had ended."""
    search = get_search(session, search_id=search_id)
    moved = session.execute(
        update(Search)
        .where(Search.id == search_id, Search.state.in_(ACTIVE_STATES))
        .values(state=JobState.CANCELLED, reason="cancelled by request", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        return False
    for job_id in session.scalars(
        select(TrainingJob.id).where(
            TrainingJob.search_id == search_id, TrainingJob.state.in_(ACTIVE_STATES)
        )
    ).all():
        jobs.cancel_job(session, job_id=job_id)
    session.flush()
    session.refresh(search)
    return True


def start_trial(
    session: Session,
    *,
    job_id: str,
    attempt: int,
    study_trial: int,
    params: dict[str, Any],
    spec: dict[str, Any],
) -> bool:
    """Record a trial's sampled parameters and spec, fenced by its attempt. A trial asked
    again (a redelivery after its worker died) forgets the earlier attempt's folds."""
    if not jobs.heartbeat(session, job_id=job_id, attempt=attempt):
        return False
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id)
        .values(study_trial=study_trial, params=params, spec=spec)
        .execution_options(synchronize_session=False)
    )
    jobs.delete_folds(session, job_id=job_id)
    return True


def end_trial(session: Session, *, job_id: str, outcome: str, objective: float | None) -> None:
    """How a trial ended; written in the transaction that marks its job succeeded."""
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id)
        .values(outcome=outcome, objective=objective)
        .execution_options(synchronize_session=False)
    )


def pin_folds(session: Session, *, search_id: str, job_id: str, sha256: str) -> str:
    """Record a trial's fold assignment; the search's pinned one (the first recorded)."""
    session.execute(
        update(Search)
        .where(Search.id == search_id, Search.folds_sha256.is_(None))
        .values(folds_sha256=sha256)
        .execution_options(synchronize_session=False)
    )
    jobs.set_folds_sha256(session, job_id=job_id, sha256=sha256)
    pinned = session.scalar(select(Search.folds_sha256).where(Search.id == search_id))
    if pinned is None:
        raise InvalidState(f"search {search_id} has no fold assignment")
    return pinned
