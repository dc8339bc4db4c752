"""registry/searches.py: `advance` keeps the budget and queues exactly one refit, even
when trials end together in two processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.vocabulary import JobState
from registry import jobs, searches
from registry.db import make_sessionmaker, utcnow
from registry.models import Search, TrainingJob
from tests.factories import SPEC, make_dataset


def _search(
    session: Session, *, trials: int, parallel: int, refit_top: int = 1
) -> tuple[str, list[TrainingJob]]:
    dataset = make_dataset(session)
    search = Search(
        model_name=f"s-{uuid.uuid4().hex[:8]}",
        dataset_id=dataset.id,
        spec=SPEC,
        space={"units": [2, 4]},
        objective={"metric": "f1", "direction": "maximize"},
        budget={"trials": trials, "parallel": parallel, "wall_s": 600},
        options={"refit": True, "refit_top": refit_top},
        deadline_at=utcnow() + timedelta(minutes=10),
    )
    queued = searches.add_search(session, search)
    session.commit()
    return search.id, queued


def _complete(session: Session, job: TrainingJob, objective: float) -> None:
    claimed = jobs.claim_job(session, job_id=job.id, worker="w")
    assert claimed is not None
    searches.end_trial(session, job_id=job.id, outcome="complete", objective=objective)
    jobs.finish_job(session, job_id=job.id, attempt=claimed.attempt, state=JobState.SUCCEEDED)
    session.commit()


def test_trials_are_queued_within_the_budget_and_the_best_is_refit(engine: Engine) -> None:
    sm = make_sessionmaker(engine)
    with sm() as session:
        search_id, first = _search(session, trials=3, parallel=2)
        assert [j.trial for j in first] == [1, 2]
        assert searches.advance(session, search_id=search_id) == []  # two running already
        _complete(session, first[0], 0.8)
        third = searches.advance(session, search_id=search_id)
        session.commit()
        assert [j.trial for j in third] == [3]
        _complete(session, first[1], 0.9)
        assert searches.advance(session, search_id=search_id) == []  # the budget is spent
        _complete(session, third[0], 0.7)
        refit = searches.advance(session, search_id=search_id)
        session.commit()
        assert [(j.kind, j.trial, j.search_id) for j in refit] == [("train", 2, search_id)]
        search = searches.get_search(session, search_id=search_id)
        assert (search.state, search.best_trial, search.refit_job_id) == (
            JobState.SUCCEEDED,
            2,
            refit[0].id,
        )
        assert searches.advance(session, search_id=search_id) == []


def test_the_top_n_trials_are_refit_best_first(engine: Engine) -> None:
    sm = make_sessionmaker(engine)
    with sm() as session:
        search_id, trials = _search(session, trials=4, parallel=4, refit_top=3)
        for job, objective in zip(trials, (0.8, 0.95, 0.7, 0.9), strict=True):
            _complete(session, job, objective)
        refits = searches.advance(session, search_id=search_id)
        session.commit()
        assert [(j.kind, j.trial) for j in refits] == [("train", 2), ("train", 4), ("train", 1)]
        assert [j.spec for j in refits] == [trials[1].spec, trials[3].spec, trials[0].spec]
        search = searches.view(session, search_id=search_id)
        assert search.refit_job_id == refits[0].id
        assert {j.id for j in search.refits} == {j.id for j in refits}


def test_trials_ending_together_queue_one_refit(engine: Engine) -> None:
    sm = make_sessionmaker(engine)
    with sm() as session:
        search_id, trials = _search(session, trials=2, parallel=2)
        for job, objective in zip(trials, (0.6, 0.7), strict=True):
            _complete(session, job, objective)
    start = threading.Barrier(4)
    queued: list[int] = []

    def ended() -> None:
        with sm() as session:
            start.wait()
            queued.append(len(searches.advance(session, search_id=search_id)))
            session.commit()

    threads = [threading.Thread(target=ended) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(queued) == [0, 0, 0, 1]
    with sm() as session:
        refits = session.scalars(
            select(TrainingJob).where(
                TrainingJob.search_id == search_id, TrainingJob.kind == "train"
            )
        ).all()
        assert [r.trial for r in refits] == [2]
