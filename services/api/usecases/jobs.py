"""Submit, retrain and cancel training jobs. A job is a row before it is a message."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.access import Scope, ScopeMissing
from registry import jobs, versions
from registry.errors import InvalidState, ReportExists
from registry.models import Dataset, TrainingJob
from services.api import quotas
from services.api.auth import Caller
from services.api.deps import Queueing
from services.api.dispatch import send_committed
from services.api.schemas import JobCreate, RetrainCreate
from services.api.usecases import datasets
from training.spec import DataInfo, ModelSpec, check_against_data


def submit(q: Queueing, body: JobCreate) -> TrainingJob:
    """Queue a training job of the spec on the dataset, refused (422) when the spec cannot
    train on it."""
    dataset = datasets.resolve(q.session, q.store, body.dataset)
    job = TrainingJob(
        model_name=body.model_name,
        dataset_id=dataset.id,
        spec=body.spec.model_dump(mode="json"),
        owner=q.who.owner,
    )
    return _queue(q, dataset, body.spec, job)


def retrain(q: Queueing, *, model_name: str, version: int, body: RetrainCreate) -> TrainingJob:
    """Queue a job with a version's exact spec, on its dataset or another, into the same
    model or another; the new version records where it came from."""
    source = versions.get_version(q.session, model_name=model_name, version=version)
    dataset = datasets.resolve(q.session, q.store, body.dataset) if body.dataset else source.dataset
    job = TrainingJob(
        model_name=body.model_name or model_name,
        dataset_id=dataset.id,
        # The version's exact stored spec, not a re-dump that would add newer defaults.
        spec=dict(source.spec),
        retrained_from_id=source.id,
        owner=q.who.owner,
    )
    return _queue(q, dataset, ModelSpec.model_validate(source.spec), job)


def report(q: Queueing, *, model_name: str, version: int) -> TrainingJob:
    """Queue the report job of a version registered before evaluation reports."""
    mv = versions.get_version(q.session, model_name=model_name, version=version)
    if mv.report_sha256 is not None:
        raise ReportExists(
            f"version {version} of model {model_name!r} has its report already: GET "
            f"/models/{model_name}/versions/{version}/report"
        )
    job = TrainingJob(
        kind="report",
        model_name=model_name,
        dataset_id=mv.dataset_id,
        spec=dict(mv.spec),
        params={"version": version},
        owner=q.who.owner,
    )
    return _queue(q, mv.dataset, ModelSpec.model_validate(mv.spec), job)


def cancel(session: Session, *, job_id: str, caller: Caller) -> TrainingJob:
    """Cancel a queued or running job; its worker sees it at its next heartbeat. Only its
    owner or an admin may (403 otherwise)."""
    job = jobs.get_job(session, job_id=job_id)
    may_cancel(caller, f"job {job_id}", model=job.model_name, owner=job.owner)
    if not jobs.cancel_job(session, job_id=job_id):
        raise InvalidState(
            f"job {job_id} is {job.state}; only queued or running jobs can be cancelled"
        )
    session.commit()
    return job


def may_cancel(caller: Caller, what: str, *, model: str, owner: str | None) -> None:
    """Cancelling needs the train scope on the model, and to be its submitter or an admin."""
    caller.require(Scope.TRAIN, model=model)
    if not caller.may_act_for(owner):
        raise ScopeMissing(
            f"{what} was submitted by {owner!r}; only its owner or a key with the 'admin' "
            "scope may cancel it"
        )


def data_info(dataset: Dataset) -> DataInfo:
    """What a spec is checked against: the dataset's shape and labels, from its row."""
    return DataInfo.of_dataset(
        kind=dataset.kind,
        n_rows=dataset.n_rows,
        shape=dataset.shape,
        columns=dataset.columns,
        target=dataset.target,
        class_counts=dataset.class_counts,
    )


def _queue(q: Queueing, dataset: Dataset, spec: ModelSpec, job: TrainingJob) -> TrainingJob:
    """Queue ``job`` (a new row, not stored yet) once ``spec`` fits its dataset and the
    limits, and its owner has room for one more active job."""
    data = data_info(dataset)
    check_against_data(spec, data)
    quotas.check_spec_size(spec, data, q.settings)
    quotas.check_active_jobs(q.session, job.owner, q.settings)
    session, dispatcher = q.session, q.dispatcher
    jobs.add_job(session, job)
    # Recorded as sent in the same commit as the row, then sent: one transaction on the
    # way. A worker never sees an id that is not in the registry. A broker that refuses
    # the message leaves the job to the sweeper, which sends it ~30 s later; so does a
    # process that dies between the commit and the send, after the sweeper's requeue
    # interval (services/api/sweeper.py).
    jobs.mark_enqueued(session, job_id=job.id)
    session.commit()
    send_committed(dispatcher, session, [job])
    return job
