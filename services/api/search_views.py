"""A search row, its trials and their folds, to the leaderboard a reviewer reads."""

from __future__ import annotations

import statistics

from fastapi import Request

from core.vocabulary import JobState
from registry.models import Search, TrainingJob
from services.api.search_schemas import (
    MeanStd,
    RefitRead,
    SearchRead,
    TrialFoldRead,
    TrialRead,
)

# Leaderboard order after the complete trials, which come first, best first.
_ORDER = ("running", "queued", "pruned", "stopped", "failed", "cancelled")


def trial_state(job: TrainingJob) -> str:
    if job.state == JobState.SUCCEEDED:
        return job.outcome or "complete"
    return str(job.state)


def trial_read(job: TrainingJob) -> TrialRead:
    names = {k for f in job.folds for k, v in f.metrics.items() if isinstance(v, int | float)}
    metrics = {}
    for name in sorted(names):
        values = [
            float(f.metrics[name])
            for f in job.folds
            if isinstance(f.metrics.get(name), int | float)
        ]
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        metrics[name] = MeanStd(mean=statistics.fmean(values), std=std)
    seconds = [f.seconds for f in job.folds if f.seconds is not None]
    return TrialRead(
        trial=job.trial or 0,
        job_id=job.id,
        state=trial_state(job),
        reason=job.reason,
        params=job.params,
        objective=job.objective,
        metrics=metrics,
        folds=[TrialFoldRead.model_validate(f) for f in job.folds],
        folds_sha256=job.folds_sha256,
        seconds=sum(seconds) if seconds else None,
        worker=job.worker,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def leaderboard(search: Search) -> list[TrialRead]:
    maximize = search.objective["direction"] == "maximize"
    rows = [trial_read(job) for job in search.trials]

    def rank(t: TrialRead) -> tuple[int, float, int]:
        if t.state == "complete" and t.objective is not None:
            return (0, -t.objective if maximize else t.objective, t.trial)
        order = _ORDER.index(t.state) + 1 if t.state in _ORDER else len(_ORDER) + 1
        return (order, 0.0, t.trial)

    return sorted(rows, key=rank)


def search_url(request: Request, search: Search) -> str:
    return str(request.url_for("get_search", search_id=search.id))


def refit_read(request: Request, refit: TrainingJob) -> RefitRead:
    links = {"job": str(request.url_for("get_job", job_id=refit.id))}
    if refit.version_number is not None:
        links["model_version"] = str(
            request.url_for("get_version", name=refit.model_name, version=refit.version_number)
        )
    return RefitRead(
        job_id=refit.id,
        trial=refit.trial,
        state=refit.state,
        model_version=refit.version_number,
        links=links,
    )


def search_read(request: Request, search: Search) -> SearchRead:
    board = leaderboard(search)
    counts: dict[str, int] = {}
    for t in board:
        counts[t.state] = counts.get(t.state, 0) + 1
    place = {t.trial: i for i, t in enumerate(board)}
    refits = [
        refit_read(request, job)
        for job in sorted(search.refits, key=lambda j: place.get(j.trial or 0, len(place)))
    ]
    best = next((r for r in refits if r.job_id == search.refit_job_id), None)
    links = {"self": search_url(request, search)}
    if best is not None:
        links.update(best.links)
    return SearchRead(
        id=search.id,
        model_name=search.model_name,
        dataset_id=search.dataset_id,
        state=search.state,
        reason=search.reason,
        spec=search.spec,
        space=search.space,
        objective=search.objective,
        budget=search.budget,
        options=search.options,
        folds_sha256=search.folds_sha256,
        best_trial=search.best_trial,
        counts=counts,
        fold_fits=sum(len(t.folds) for t in board),
        leaderboard=board,
        refit=best,
        refits=refits,
        created_at=search.created_at,
        deadline_at=search.deadline_at,
        finished_at=search.finished_at,
        links=links,
    )
