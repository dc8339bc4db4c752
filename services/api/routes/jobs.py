from __future__ import annotations

import logging

from celery import Celery
from fastapi import APIRouter, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import datasets, jobs
from registry.artifacts import ArtifactStore
from registry.errors import InvalidState
from registry.models import Dataset, ModelVersion, TrainingJob
from services.api.deps import CeleryDep, SessionDep, StoreDep
from services.api.routes.datasets import builtin_dataset
from services.api.schemas import (
    FitHistoryRead,
    JobAccepted,
    JobCreate,
    JobHistoryRead,
    JobRead,
    Page,
)
from services.api.tables import BUILTIN_PREFIX, data_info
from services.problems import ERROR_RESPONSES
from workers.celery_app import TASK_TRAIN, queue_for

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger("kiln.api")


def job_read(request: Request, job: TrainingJob, version: int | None) -> JobRead:
    read = JobRead.model_validate(job)
    if read.progress is not None:
        # The curves are served by /history; a job poll stays small.
        read.progress = {k: v for k, v in read.progress.items() if k != "history"} or None
    read.model_version = version
    read.links = {"self": str(request.url_for("get_job", job_id=job.id))}
    if version is not None:
        read.links["model_version"] = str(
            request.url_for("get_version", name=job.model_name, version=version)
        )
    return read


@router.post(
    "",
    response_model=JobAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a training job",
    responses=ERROR_RESPONSES,
)
def submit_job(
    request: Request,
    response: Response,
    body: JobCreate,
    session: SessionDep,
    store: StoreDep,
    celery: CeleryDep,
) -> JobAccepted:
    """Queue a training job: k-fold cross-validation of the spec on the dataset, a refit on
    all rows, ONNX export with a parity check, and a new model version.

    The spec is checked against the dataset here (output layer against the number of
    classes, k against the smallest class): a job that cannot train is refused with 422,
    not failed an hour later. Poll the `Location` header for progress.
    """
    dataset = resolve_dataset(session, store, body.dataset)
    body.spec.check_against_data(class_counts=dataset.class_counts, data=data_info(dataset))
    job = jobs.create_job(
        session,
        model_name=body.model_name,
        dataset_id=dataset.id,
        spec=body.spec.model_dump(mode="json"),
    )
    return enqueue(request, response, session, celery, job)


def resolve_dataset(session: Session, store: ArtifactStore, ref: str) -> Dataset:
    """A dataset id, or `sklearn:<name>` for a built-in one (stored on first use)."""
    if ref.startswith(BUILTIN_PREFIX):
        return builtin_dataset(session, store, ref.removeprefix(BUILTIN_PREFIX))
    return datasets.get_dataset(session, dataset_id=ref)


def enqueue(
    request: Request, response: Response, session: Session, celery: Celery, job: TrainingJob
) -> JobAccepted:
    """Commit the queued job, then send its id to the workers; answer 202 with its URL."""
    # The row is committed before the message goes out: a worker never sees an id that
    # is not in the registry, and if the broker is down the sweeper sends it later.
    session.commit()
    try:
        celery.send_task(TASK_TRAIN, args=[job.id], queue=queue_for(job.spec))
    except Exception:
        log.exception("could not send job %s to the broker; the sweeper will retry", job.id)
    else:
        jobs.mark_enqueued(session, job_id=job.id)
        session.commit()
    url = str(request.url_for("get_job", job_id=job.id))
    response.headers["Location"] = url
    return JobAccepted(id=job.id, state="queued", links={"self": url})


def _version_of(session: SessionDep, job_id: str) -> int | None:
    return session.scalar(select(ModelVersion.version).where(ModelVersion.job_id == job_id))


@router.get("/{job_id}", response_model=JobRead, summary="Get a job", responses=ERROR_RESPONSES)
def get_job(request: Request, session: SessionDep, job_id: str) -> JobRead:
    """State (queued, running, succeeded, failed, cancelled), fold and epoch progress,
    per-fold metrics as folds finish, every state change with its time, and on failure
    a reason."""
    job = jobs.get_job(session, job_id=job_id)
    return job_read(request, job, _version_of(session, job_id))


@router.get(
    "/{job_id}/history",
    response_model=JobHistoryRead,
    summary="Per-epoch training curves",
    responses=ERROR_RESPONSES,
)
def get_job_history(session: SessionDep, job_id: str) -> JobHistoryRead:
    """Loss and metrics after every epoch (training, and validation where the fit has
    validation rows) for each fold and for the final refit, while the job runs and after.
    A running fit's lists grow as it trains (refreshed with every heartbeat, about once a
    second); `done` says whether more epochs follow."""
    job = jobs.get_job(session, job_id=job_id)
    running: dict[str, dict[str, list[float]]] = (job.progress or {}).get("history") or {}
    stored = {f.fold: f for f in job.folds}
    folds = [FitHistoryRead(fold=f.fold, done=True, history=f.history) for f in stored.values()]
    folds += [
        FitHistoryRead(fold=int(key), done=False, history=series)
        for key, series in running.items()
        if key.isdigit() and int(key) not in stored
    ]
    folds.sort(key=lambda f: f.fold or 0)
    refit = None
    if "refit" in running:
        refit = FitHistoryRead(fold=None, done=job.state == "succeeded", history=running["refit"])
    return JobHistoryRead(job_id=job.id, state=job.state, folds=folds, refit=refit)


@router.get("", response_model=Page[JobRead], summary="List jobs")
def list_jobs(
    request: Request,
    session: SessionDep,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[JobRead]:
    rows = jobs.list_jobs(session, state=state, limit=limit, offset=offset)
    return Page[JobRead](
        items=[job_read(request, j, _version_of(session, j.id)) for j in rows],
        limit=limit,
        offset=offset,
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    summary="Cancel a job",
    responses=ERROR_RESPONSES,
)
def cancel_job(request: Request, session: SessionDep, job_id: str) -> JobRead:
    """Cancel a queued or running job. A running job stops at its next batch (within a
    few seconds); folds it finished stay recorded."""
    job = jobs.get_job(session, job_id=job_id)
    if not jobs.cancel_job(session, job_id=job_id):
        raise InvalidState(
            f"job {job_id} is {job.state}; only queued or running jobs can be cancelled"
        )
    session.commit()
    session.refresh(job)
    return job_read(request, job, None)
