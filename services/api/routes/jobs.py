from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.orm import Session

from core.access import Scope
from core.vocabulary import JobState
from registry import views as registry_views
from registry.models import TrainingJob
from services.api import idempotency, views
from services.api.auth import ReadCaller, TrainCaller, needs
from services.api.deps import Queueing, QueueingDep, ReadsDep, SessionDep
from services.api.idempotency import IdempotencyKey
from services.api.schemas import (
    JobAccepted,
    JobCreate,
    JobHistoryRead,
    JobRead,
    Limit,
    Offset,
    Page,
    Text,
)
from services.api.usecases import jobs as usecases
from services.problems import responses

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    summary="Submit a training job",
    responses=responses(404, 409, 429),
)
def submit_job(
    request: Request,
    response: Response,
    body: JobCreate,
    q: QueueingDep,
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | Response:
    """Queue a training job: k-fold cross-validation of the spec on the dataset, a refit on
    all rows, ONNX export with a parity check, and a new model version.

    The spec is checked against the dataset here (output layer against the number of
    classes, k against the smallest class): a job that cannot train is refused with 422,
    not failed an hour later. Poll the `Location` header for progress. With an
    `Idempotency-Key`, sending the same request again answers the same job.
    """
    q.who.require(Scope.TRAIN, model=body.model_name)
    return accept(
        request,
        response,
        q,
        key=idempotency_key,
        operation="jobs-submit_job",
        fingerprint=idempotency.fingerprint(body.model_dump(mode="json")),
        queue=lambda: usecases.submit(q, body),
    )


def accept(
    request: Request,
    response: Response,
    q: Queueing,
    *,
    key: str | None,
    operation: str,
    fingerprint: str,
    queue: Callable[[], TrainingJob],
) -> BaseModel | Response:
    """The 202 of a route that queues a job: where to poll, once per Idempotency-Key."""

    def run() -> JobAccepted:
        job = queue()
        response.headers["Location"] = views.job_url(request, job)
        return views.job_accepted(request, job)

    return idempotency.once(
        request.app.state.sessionmaker,
        key=key,
        owner=q.who.owner,
        operation=operation,
        request=fingerprint,
        status=status.HTTP_202_ACCEPTED,
        run=run,
        headers=views.accepted_headers,
    )


@router.get("/{job_id}", summary="Get a job", response_model=JobRead, responses=responses(404))
async def get_job(request: Request, reads: ReadsDep, who: ReadCaller, job_id: Text) -> Response:
    """State (queued, running, succeeded, failed, cancelled), fold and epoch progress,
    per-fold metrics as folds finish, every state change with its time, and on failure
    a reason. Answered from a read about a second old at most (`API_READ_CACHE_S`)."""

    def load(session: Session, request: Request) -> JobRead:
        return views.job_read(request, registry_views.job(session, job_id=job_id))

    answer = await reads.answer("job", request, (job_id,), load, model="model_name")
    who.require(Scope.READ, model=answer.model_name)
    return answer.response()


@router.get("/{job_id}/history", summary="Per-epoch training curves", responses=responses(404))
def get_job_history(session: SessionDep, who: ReadCaller, job_id: Text) -> JobHistoryRead:
    """Loss and metrics after every epoch (training, and validation where the fit has
    validation rows) for each fold and for the final refit, while the job runs and after.
    A running fit's lists grow as it trains (refreshed with every heartbeat, about once a
    second); `done` says whether more epochs follow."""
    job = registry_views.job(session, job_id=job_id)
    who.require(Scope.READ, model=job.model_name)
    return views.job_history(job)


@router.get("", summary="List jobs", dependencies=[needs(Scope.READ)])
def list_jobs(
    request: Request,
    session: SessionDep,
    state: JobState | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[JobRead]:
    rows = registry_views.jobs(session, state=state, limit=limit, offset=offset)
    return Page[JobRead](
        items=[views.job_read(request, j) for j in rows], limit=limit, offset=offset
    )


@router.post("/{job_id}/cancel", summary="Cancel a job", responses=responses(404, 409))
def cancel_job(request: Request, session: SessionDep, who: TrainCaller, job_id: Text) -> JobRead:
    """Cancel a queued or running job: one's own, or any with the `admin` scope. A running
    job stops at its next batch (within a few seconds); folds it finished stay recorded."""
    usecases.cancel(session, job_id=job_id, caller=who)
    return views.job_read(request, registry_views.job(session, job_id=job_id))
