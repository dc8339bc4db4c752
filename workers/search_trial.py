"""The trial job kind: one trial of a model search, k-fold only, pruned between folds.

The trial asks Optuna for its parameters when it starts (TPE, the study in the registry
database through Optuna's RDBStorage, so every worker's trials share it), trains the
folds every trial of the search shares (their hash pinned on the search), reports each
fold's objective to Optuna as it ends and stops when Optuna's WilcoxonPruner says its
folds are already worse than the best trial's on the same folds. Optuna and TensorFlow
are imported in the job's child process only.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core.errors import ErrorKind, KilnError
from core.vocabulary import DataKind
from registry import searches
from registry.artifacts import ArtifactStore
from registry.db import utcnow
from registry.models import Search
from training.errors import Cancelled
from training.hooks import FoldResult, Hooks
from training.spec import ModelSpec
from training.spec.search import FloatRange, IntRange, SearchOptions, SearchSpace, trial_spec
from workers.data import load_table
from workers.jobrun import JobRun
from workers.progress import Progress

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("kiln.worker")


class TrialSpecInvalid(KilnError):
    kind = ErrorKind.INVALID
    code = "trial_spec_invalid"


class FoldsDiffer(KilnError):
    kind = ErrorKind.CONFLICT
    code = "folds_differ"


class _Pruned(Exception):
    """Optuna said stop between folds ("pruned"), or the search's wall time passed
    ("stopped")."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def run_trial(run: JobRun, *, store: ArtifactStore, fold_processes: int = 1) -> str:
    import optuna

    job = run.job
    search = run.read(lambda session: searches.get_search(session, search_id=job.search_id or ""))
    if utcnow() >= search.deadline_at:
        run.succeed(_ended(job.id, "stopped", None), progress={})
        return "stopped: the search's wall time had passed"
    study = _study(run, search)
    if job.study_trial is not None:
        # An earlier attempt asked for this trial and its worker died: that Optuna trial
        # failed; this attempt asks for a new one.
        _tell_failed(study, job.study_trial)
    trial = study.ask(distributions(SearchSpace.model_validate(search.space)))
    try:
        outcome, value = _run(run, search, trial, store, fold_processes)
    except BaseException:
        _tell_failed(study, trial.number)
        raise
    if outcome == "complete":
        study.tell(trial, value)
    else:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    if run.succeed(_ended(job.id, outcome, value), progress={}) is None:
        return "dropped: job no longer this attempt's"
    shown = "" if value is None else f" {search.objective['metric']}={value:.4f}"
    return f"trial {job.trial} (Optuna {trial.number}) {outcome}{shown}"


def pruner(options: SearchOptions) -> optuna.pruners.BasePruner:
    """The pruner a search's options ask for (bench/search.py replays with this too)."""
    import optuna

    if options.prune is False:
        return optuna.pruners.NopPruner()
    if options.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    with warnings.catch_warnings():
        # "WilcoxonPruner is experimental": on every trial's log, and nothing to act on.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(p_threshold=options.prune_p, n_startup_steps=2)


def _tell_failed(study: optuna.Study, number: int) -> None:
    """Mark an Optuna trial failed, on the way out of a failure: what goes wrong here (the
    trial already finished, the database away) must not hide the failure itself."""
    import optuna

    try:
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    except Exception as exc:
        log.warning("Optuna trial %d not marked failed: %s", number, exc)


def _run(
    run: JobRun,
    search: Search,
    trial: optuna.Trial,
    store: ArtifactStore,
    fold_processes: int,
) -> tuple[str, float | None]:
    from training.pipeline import cross_validate, fold_assignment, folds_train_together

    job = run.job
    base = ModelSpec.model_validate(search.spec)
    kind = DataKind.SEQUENCE if base.window is not None else job.dataset.kind
    try:
        spec = trial_spec(base, trial.params, kind=kind)
    except ValidationError as exc:
        raise TrialSpecInvalid(
            f"parameters {trial.params} give no valid spec: {exc.errors()[0]['msg']}"
        ) from exc
    params = dict(trial.params)
    if not run.write(
        "trial parameters",
        lambda session: searches.start_trial(
            session,
            job_id=job.id,
            attempt=run.attempt,
            study_trial=trial.number,
            params=params,
            spec=spec.model_dump(mode="json"),
        ),
    ):
        raise Cancelled(f"job {job.id} is no longer attempt {run.attempt}'s")
    table = load_table(job.dataset, spec, store)
    mine = fold_assignment(table, spec)
    pinned = run.write(
        "fold assignment",
        lambda session: searches.pin_folds(
            session, search_id=search.id, job_id=job.id, sha256=mine
        ),
    )
    if pinned != mine:
        raise FoldsDiffer(
            f"this trial's folds (sha256 {mine[:12]}…) are not the search's ({pinned[:12]}…); "
            "its parameters changed which rows each fold holds"
        )
    metric = search.objective["metric"]
    chosen = SearchOptions.model_validate(search.options).prune
    stackable = folds_train_together(table, spec)
    prune = chosen if chosen is not None else not stackable
    # Folds trained together end together: nothing would be left to prune between them.
    together = stackable and not prune
    scores: list[float] = []

    def on_fold(result: FoldResult) -> None:
        run.store_fold(result)
        value = result.metrics.get(metric)
        if not isinstance(value, int | float):
            raise TrialSpecInvalid(f"fold {result.fold} has no score {metric!r}")
        scores.append(float(value))
        trial.report(float(value), step=result.fold - 1)
        if len(scores) == spec.k_folds:  # the last to end (folds in processes end in any order)
            return
        if together:
            # Every fold has ended by now: the work is done, the wall time stops nothing.
            return
        if utcnow() >= search.deadline_at:
            raise _Pruned("stopped")
        if prune and trial.should_prune():
            raise _Pruned("pruned")

    progress = run.track(Progress(n_folds=spec.k_folds, epochs=spec.epochs))
    try:
        cross_validate(
            table,
            spec=spec,
            hooks=Hooks(on_epoch=progress.on_epoch, on_fold=on_fold, should_stop=run.stopped),
            fold_processes=fold_processes,
            together=together,
        )
    except _Pruned as stop:
        return stop.outcome, None
    return "complete", statistics.fmean(scores)


def _ended(job_id: str, outcome: str, value: float | None) -> Callable[[Session], str]:
    def write(session: Session) -> str:
        searches.end_trial(session, job_id=job_id, outcome=outcome, objective=value)
        return outcome

    return write


def _study(run: JobRun, search: Search) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = run.read(lambda session: _url(session.get_bind()))
    engine_kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    storage = _storage(url, engine_kwargs)
    options = SearchOptions.model_validate(search.options)
    # Seeded per trial: trials asked at once in fresh processes would otherwise sample
    # the same parameters. constant_liar keeps parallel TPE trials apart.
    sampler = optuna.samplers.TPESampler(
        seed=options.seed * 7919 + (run.job.trial or 0), constant_liar=True
    )
    return optuna.create_study(
        study_name=search.study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner(options),
        direction=search.objective["direction"],
        load_if_exists=True,
    )


def _storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """Optuna's storage on the registry database. The first trials of a search start
    together, and Optuna creates its tables with a plain CREATE: the loser of that race
    (a duplicate type on PostgreSQL, a table that exists on SQLite) tries again and
    finds them there."""
    import optuna

    for attempt in range(1, 6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except DBAPIError as exc:
            if attempt == 5:
                raise
            log.info("optuna storage not ready (%s); trying again", type(exc).__name__)
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


def _url(bind: Engine | Connection) -> str:
    engine = bind if isinstance(bind, Engine) else bind.engine
    return engine.url.render_as_string(hide_password=False)


def distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space as Optuna's distributions, one per dimension given."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    result: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, values in space.dimensions().items():
        if isinstance(values, IntRange):
            result[name] = IntDistribution(
                values.low, values.high, log=values.log, step=values.step
            )
        elif isinstance(values, FloatRange):
            result[name] = FloatDistribution(values.low, values.high, log=values.log)
        else:
            result[name] = CategoricalDistribution(list(values))
    return result
