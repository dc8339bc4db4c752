"""A version's evaluation report (JSON, one self-contained HTML file), its reference
profile and a dataset's drift from it, and a report job for a version registered before
them."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from core.access import Scope
from core.errors import KilnError
from core.vocabulary import DataKind
from registry import datasets, versions
from registry.artifacts import ArtifactStore
from registry.errors import ProfileNotFound, ReportNotFound
from registry.models import ModelVersion
from services.api import drift, idempotency, report_html
from services.api.auth import needs
from services.api.deps import QueueingDep, SessionDep, StoreDep
from services.api.errors import DriftUnavailable
from services.api.idempotency import IdempotencyKey
from services.api.report_schemas import DriftRead, EvaluationReport, ReferenceProfile
from services.api.routes.jobs import accept
from services.api.schemas import JobAccepted, Text, VersionNumber
from services.api.usecases import jobs as job_usecases
from services.problems import responses
from training.inspect import read_csv

router = APIRouter(prefix="/models", tags=["models"])


@router.get(
    "/{name}/versions/{version}/report",
    summary="Get a version's evaluation report",
    responses=responses(404),
    # As stored: a classification section has no regression fields and vice versa.
    response_model_exclude_unset=True,
    dependencies=[needs(Scope.READ)],
)
def get_report(
    request: Request, session: SessionDep, store: StoreDep, name: Text, version: VersionNumber
) -> EvaluationReport:
    """ROC and precision-recall curves, calibration, the threshold table, per-class
    scores and confusion matrices (regression: residuals, predicted against actual, error
    by decile) of each fold's model on its validation rows and of the version's model on
    its test rows: every number scikit-learn's on those rows."""
    return _report(request, session, store, name, version)


@router.get(
    "/{name}/versions/{version}/report.html",
    summary="Get a version's evaluation report as one HTML file",
    response_class=HTMLResponse,
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def get_report_html(
    request: Request, session: SessionDep, store: StoreDep, name: Text, version: VersionNumber
) -> HTMLResponse:
    """The report as a single HTML file with inline charts and no external assets: it
    opens offline and can be attached to a review."""
    report = _report(request, session, store, name, version)
    return HTMLResponse(
        report_html.render(report.model_dump(mode="json", by_alias=True, exclude_unset=True)),
        headers={"Content-Disposition": f'inline; filename="{name}-v{version}-report.html"'},
    )


@router.post(
    "/{name}/versions/{version}/report",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    summary="Write the report of a version registered before reports",
    responses=responses(404, 409, 429),
)
def request_report(
    request: Request,
    response: Response,
    q: QueueingDep,
    name: Text,
    version: VersionNumber,
    idempotency_key: IdempotencyKey = None,
) -> BaseModel | Response:
    """Queue a job that scores the version's ONNX model on the rows its spec held out for
    testing, or without a test split on the rows it trained on (marked so): its fold
    models were never kept. It also writes the reference profile and the held-out
    predictions when the version lacks them. A version that has a report already is a
    409."""
    q.who.require(Scope.TRAIN, model=name)
    return accept(
        request,
        response,
        q,
        key=idempotency_key,
        operation="models-request_report",
        fingerprint=idempotency.fingerprint(name, version),
        queue=lambda: job_usecases.report(q, model_name=name, version=version),
    )


@router.get(
    "/{name}/versions/{version}/profile",
    summary="Get a version's reference profile",
    responses=responses(404),
    dependencies=[needs(Scope.READ)],
)
def get_profile(
    request: Request, session: SessionDep, store: StoreDep, name: Text, version: VersionNumber
) -> ReferenceProfile:
    """What the rows the version's model was trained on looked like: per feature its
    count, mean, standard deviation, range, quantiles and histogram; a regression's target
    likewise, a classification's class balance. Served data is compared with it."""
    body = _profile(session, store, name, version)
    links = {
        "self": str(request.url_for("get_profile", name=name, version=version)),
        "version": str(request.url_for("get_version", name=name, version=version)),
    }
    return ReferenceProfile.model_validate(
        {**body, "model_name": name, "version": version, "links": links}
    )


@router.get(
    "/{name}/versions/{version}/drift",
    summary="Compare a dataset with a version's training rows",
    responses=responses(404, 422),
    dependencies=[needs(Scope.READ)],
)
def get_drift(
    session: SessionDep,
    store: StoreDep,
    name: Text,
    version: VersionNumber,
    dataset: Annotated[str, Query(description="The id of a stored table to compare.")],
) -> DriftRead:
    """Whether the rows of `dataset` look like the rows the version was trained on, per
    feature against the version's reference profile: a chi-squared test up to 1,000 rows,
    the Wasserstein distance above (services/api/drift.py). For tables; the dataset needs
    the version's feature columns."""
    mv = versions.get_version(session, model_name=name, version=version)
    names = mv.signature.get("feature_names")
    if mv.signature.get("kind") != "table" or not names:
        raise DriftUnavailable(
            f"version {version} of model {name!r} was trained on {mv.signature.get('kind')} "
            "data; drift is compared for tables, by their named columns"
        )
    profile = _stored_profile(store, mv)
    rows = datasets.get_dataset(session, dataset_id=dataset)
    if rows.kind != DataKind.TABLE:
        raise DriftUnavailable(f"dataset {dataset} holds {rows.kind.value}s, not a table")
    frame = read_csv(store.get(rows.sha256), target=rows.target)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DriftUnavailable(
            f"dataset {dataset} lacks the version's feature columns {missing}; it has "
            f"{[c for c in frame.columns if c != rows.target]}"
        )
    found = drift.drift(profile, frame[names].to_numpy(dtype="float64"), names=names)
    return DriftRead.model_validate(
        {**found, "model_name": name, "version": version, "dataset_id": dataset}
    )


def _profile(session: Session, store: ArtifactStore, name: str, version: int) -> dict[str, Any]:
    mv = versions.get_version(session, model_name=name, version=version)
    return _stored_profile(store, mv)


def _stored_profile(store: ArtifactStore, mv: ModelVersion) -> dict[str, Any]:
    return _stored(
        store,
        mv.profile_sha256,
        ProfileNotFound(
            f"version {mv.version} of model {mv.model_name!r} was registered before reference "
            f"profiles; POST /models/{mv.model_name}/versions/{mv.version}/report asks a "
            "worker to write one"
        ),
    )


def _stored(store: ArtifactStore, sha256: str | None, missing: KilnError) -> dict[str, Any]:
    """A version's JSON artifact (report, profile), or ``missing`` when it has none."""
    if sha256 is None:
        raise missing
    document: dict[str, Any] = json.loads(store.get(sha256))
    return document


def _report(
    request: Request, session: Session, store: ArtifactStore, name: str, version: int
) -> EvaluationReport:
    mv = versions.get_version(session, model_name=name, version=version)
    body = _stored(
        store,
        mv.report_sha256,
        ReportNotFound(
            f"version {version} of model {name!r} was registered before evaluation reports; "
            f"POST /models/{name}/versions/{version}/report asks a worker to write one"
        ),
    )
    links = {
        "self": str(request.url_for("get_report", name=name, version=version)),
        "html": str(request.url_for("get_report_html", name=name, version=version)),
        "version": str(request.url_for("get_version", name=name, version=version)),
    }
    return EvaluationReport.model_validate(
        {**body, "model_name": name, "version": version, "links": links}
    )
