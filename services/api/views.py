"""Rows to response bodies. Pure conversions of rows that registry.views loaded with
everything they show: no query runs here."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from core.vocabulary import JobState
from registry.models import Alias, ModelVersion, TrainingJob
from registry.views import ModelSummary
from services.api.alias_schemas import AliasRead
from services.api.schemas import (
    ArtifactRead,
    DatasetRef,
    FitHistoryRead,
    FoldRead,
    JobAccepted,
    JobHistoryRead,
    JobRead,
    ModelRead,
    ModelVersionRead,
    VersionRef,
)


def job_url(request: Request, job: TrainingJob) -> str:
    return str(request.url_for("get_job", job_id=job.id))


def job_accepted(request: Request, job: TrainingJob) -> JobAccepted:
    return JobAccepted(id=job.id, state=job.state, links={"self": job_url(request, job)})


def accepted_headers(body: dict[str, Any]) -> dict[str, str]:
    """The headers of a replayed 202 (services/api/idempotency.py): where to poll."""
    return {"Location": body["links"]["self"]}


def job_read(request: Request, job: TrainingJob) -> JobRead:
    read = JobRead.model_validate(job)
    if read.progress is not None:
        # The curves are served by /history; a job poll stays small.
        read.progress = {k: v for k, v in read.progress.items() if k != "history"} or None
    read.model_version = job.version_number
    read.links = {"self": job_url(request, job)}
    if job.version_number is not None:
        read.links["model_version"] = str(
            request.url_for("get_version", name=job.model_name, version=job.version_number)
        )
    return read


def job_history(job: TrainingJob) -> JobHistoryRead:
    """A finished fit's curves are in its fold row; the running fits' and the refit's in
    the job's progress (one place each: workers/jobrun.py)."""
    running: dict[str, dict[str, list[float]]] = (job.progress or {}).get("history") or {}
    stored = {f.fold for f in job.folds}
    folds = [FitHistoryRead(fold=f.fold, done=True, history=f.history) for f in job.folds]
    # A retried attempt trains again folds whose rows from the lost attempt stand until
    # it replaces them: those rows are shown until then.
    folds += [
        FitHistoryRead(fold=int(key), done=False, history=series)
        for key, series in running.items()
        if key.isdigit() and int(key) not in stored
    ]
    folds.sort(key=lambda f: f.fold or 0)
    refit = None
    if "refit" in running:
        refit = FitHistoryRead(
            fold=None, done=job.state == JobState.SUCCEEDED, history=running["refit"]
        )
    return JobHistoryRead(job_id=job.id, state=job.state, folds=folds, refit=refit)


def model_read(model: ModelSummary) -> ModelRead:
    # What the predictor serves without a version: archived versions are never "newest".
    servable = [number for number, archived in model.versions if not archived]
    return ModelRead(
        name=model.name,
        description=model.description,
        tags=model.tags,
        aliases=model.aliases,
        created_at=model.created_at,
        latest_version=max(servable) if servable else None,
        versions=[number for number, _ in model.versions],
    )


def alias_read(alias: Alias) -> AliasRead:
    return AliasRead(alias=alias.name, version=alias.version, updated_at=alias.updated_at)


def version_read(request: Request, mv: ModelVersion) -> ModelVersionRead:
    onnx_url = request.url_for("download_onnx", name=mv.model_name, version=mv.version)
    parent = mv.retrained_from
    return ModelVersionRead(
        model_name=mv.model_name,
        version=mv.version,
        description=mv.description,
        tags={t.key: t.value for t in mv.tags},
        aliases=[a.name for a in mv.aliases],
        archived_at=mv.archived_at,
        retrained_from=(
            VersionRef(model_name=parent.model_name, version=parent.version) if parent else None
        ),
        job_id=mv.job_id,
        dataset=DatasetRef.model_validate(mv.dataset),
        spec=mv.spec,
        metrics=mv.metrics,
        metrics_on="training_rows" if mv.spec.get("cross_validation") is False else "folds",
        test_metrics=mv.test_metrics,
        folds=[FoldRead.model_validate(f) for f in mv.folds],
        parity=mv.parity,
        signature=mv.signature,
        artifacts={
            "onnx": ArtifactRead(
                sha256=mv.onnx_sha256, size_bytes=mv.onnx_size_bytes, url=str(onnx_url)
            ),
            "keras": ArtifactRead(sha256=mv.keras_sha256),
            **{
                kind: ArtifactRead(
                    sha256=sha256,
                    url=str(request.url_for(route, name=mv.model_name, version=mv.version)),
                )
                for kind, sha256, route in (
                    ("report", mv.report_sha256, "get_report"),
                    ("profile", mv.profile_sha256, "get_profile"),
                )
                if sha256 is not None
            },
        },
        library_versions=mv.library_versions,
        device=mv.device,
        created_at=mv.created_at,
    )
