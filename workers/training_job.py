"""The training job kind: load the dataset, train, store the artifacts, register a version.

TensorFlow is imported inside `train` (through training.pipeline), so only the child
process that runs a job ever loads it; the worker's parent process forks children and
must never have touched TensorFlow (design.md: TF does not survive a fork).
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from registry import jobs, orphans, predictions, versions
from registry.artifacts import ArtifactStore
from registry.models import ModelVersion
from training.hooks import Hooks
from training.spec import ModelSpec
from workers.data import load_table
from workers.jobrun import JobRun, run_job
from workers.progress import Progress
from workers.report_job import json_bytes, write_report


def train(run: JobRun, *, store: ArtifactStore, fold_processes: int = 1) -> str:
    from training.pipeline import run_training

    job, dataset = run.job, run.job.dataset
    spec = ModelSpec.model_validate(job.spec)
    progress = run.track(Progress(n_folds=spec.n_folds, epochs=spec.epochs))
    table = load_table(dataset, spec, store)
    result = run_training(
        table,
        spec=spec,
        hooks=Hooks(on_epoch=progress.on_epoch, on_fold=run.store_fold, should_stop=run.stopped),
        fold_processes=fold_processes,
    )

    def register(session: Session) -> ModelVersion:
        # Stored inside the registering transaction: a version deleted at this moment with
        # the same bytes cannot take them away (registry.orphans).
        onnx_sha256 = orphans.put_referenced(session, store, result.onnx_bytes)
        keras_sha256 = orphans.put_referenced(session, store, result.keras_bytes)
        report_sha256 = (
            None
            if result.report is None
            else orphans.put_referenced(session, store, json_bytes(result.report))
        )
        profile_sha256 = (
            None
            if result.profile is None
            else orphans.put_referenced(session, store, json_bytes(result.profile))
        )
        held_out = result.test_predictions
        predictions_sha256 = (
            None
            if held_out is None
            else orphans.put_referenced(
                session, store, predictions.encode(held_out.rows, held_out.y, held_out.output)
            )
        )
        row = ModelVersion(
            job_id=job.id,
            dataset_id=dataset.id,
            spec=spec.model_dump(mode="json"),
            metrics=result.summary,
            parity=result.parity,
            signature=result.signature,
            onnx_sha256=onnx_sha256,
            onnx_size_bytes=len(result.onnx_bytes),
            keras_sha256=keras_sha256,
            report_sha256=report_sha256,
            predictions_sha256=predictions_sha256,
            profile_sha256=profile_sha256,
            library_versions=result.library_versions,
            device=result.device,
            retrained_from_id=job.retrained_from_id,
            test_metrics=(
                None
                if result.test_metrics is None
                else {**result.test_metrics, "n_test": result.n_test}
            ),
        )
        jobs.set_folds_sha256(session, job_id=job.id, sha256=result.folds_sha256)
        return versions.register_version(session, model_name=job.model_name, row=row)

    # The refit's curves have no fold row: they stay in the finished job's progress.
    # `succeed` checks that the job is still this attempt's before `register` runs, in its
    # transaction: a paused worker whose job went to another attempt registers nothing.
    version = run.succeed(register, progress={"history": {"refit": progress.refit_history()}})
    if version is None:
        # Cancelled or taken back (perhaps claimed again) meanwhile: the registry stays
        # as it was.
        return "dropped: job no longer this attempt's"
    return f"registered {job.model_name} version {version.version}"


def run_training_job(
    job_id: str,
    *,
    sm: sessionmaker[Session],
    store: ArtifactStore,
    heartbeat_interval_s: float,
    fold_processes: int = 1,
    db_retry_s: float = 60.0,
) -> str:
    """Run one job to a terminal state with its kind's body: a training job registers a
    version, a search's trial only cross-validates, a report job writes an older version's
    evaluation report; what the Celery task calls."""

    def body(run: JobRun) -> str:
        if run.job.kind == "trial":
            from workers.search_trial import run_trial

            return run_trial(run, store=store, fold_processes=fold_processes)
        if run.job.kind == "report":
            return write_report(run, store=store)
        return train(run, store=store, fold_processes=fold_processes)

    return run_job(
        job_id, sm=sm, heartbeat_interval_s=heartbeat_interval_s, body=body, db_retry_s=db_retry_s
    )
