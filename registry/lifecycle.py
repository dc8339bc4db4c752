"""What happens to versions after they are registered: descriptions and tags, searching
and ordering, archiving, deletion with artifact clean-up, lineage and comparison."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from registry.aliases import lock_model
from registry.db import utcnow
from registry.errors import MetricUnknown, TagInvalid, VersionInUse, VersionNotFound
from registry.models import (
    Alias,
    Dataset,
    FoldMetric,
    ModelTag,
    ModelVersion,
    RegisteredModel,
    TrainingJob,
    VersionTag,
)
from registry.versions import get_model, get_version

TAG_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
MAX_TAG_VALUE = 5000
METRIC_STATS = ("mean", "std")


def check_tag(key: str, value: str | None = None) -> None:
    if not TAG_KEY_PATTERN.match(key):
        raise TagInvalid(
            f"tag key {key!r} is not valid: use 1 to 250 letters, digits, '_', '.' or '-'"
        )
    if value is not None and len(value) > MAX_TAG_VALUE:
        raise TagInvalid(
            f"the value of tag {key!r} has {len(value)} characters; at most {MAX_TAG_VALUE}"
        )


# Descriptions -----------------------------------------------------------------------------


def set_model_description(
    session: Session, *, model_name: str, description: str | None
) -> RegisteredModel:
    model = get_model(session, name=model_name)
    model.description = description
    session.flush()
    return model


def set_version_description(
    session: Session, *, model_name: str, version: int, description: str | None
) -> ModelVersion:
    mv = get_version(session, model_name=model_name, version=version)
    mv.description = description
    session.flush()
    return mv


# Tags -------------------------------------------------------------------------------------


def model_tags(session: Session, *, model_id: int) -> dict[str, str]:
    rows = session.scalars(
        select(ModelTag).where(ModelTag.registered_model_id == model_id).order_by(ModelTag.key)
    ).all()
    return {r.key: r.value for r in rows}


def version_tags(session: Session, *, version_id: int) -> dict[str, str]:
    rows = session.scalars(
        select(VersionTag).where(VersionTag.model_version_id == version_id).order_by(VersionTag.key)
    ).all()
    return {r.key: r.value for r in rows}


def set_model_tag(session: Session, *, model_name: str, key: str, value: str) -> dict[str, str]:
    check_tag(key, value)
    model = get_model(session, name=model_name)
    row = session.scalars(
        select(ModelTag).where(ModelTag.registered_model_id == model.id, ModelTag.key == key)
    ).first()
    if row is None:
        session.add(ModelTag(registered_model_id=model.id, key=key, value=value))
    else:
        row.value = value
    session.flush()
    return model_tags(session, model_id=model.id)


def delete_model_tag(session: Session, *, model_name: str, key: str) -> dict[str, str]:
    model = get_model(session, name=model_name)
    row = session.scalars(
        select(ModelTag).where(ModelTag.registered_model_id == model.id, ModelTag.key == key)
    ).first()
    if row is None:
        raise TagNotFound(f"model {model_name!r} has no tag {key!r}")
    session.delete(row)
    session.flush()
    return model_tags(session, model_id=model.id)


def set_version_tag(
    session: Session, *, model_name: str, version: int, key: str, value: str
) -> dict[str, str]:
    check_tag(key, value)
    mv = get_version(session, model_name=model_name, version=version)
    row = session.scalars(
        select(VersionTag).where(VersionTag.model_version_id == mv.id, VersionTag.key == key)
    ).first()
    if row is None:
        session.add(VersionTag(model_version_id=mv.id, key=key, value=value))
    else:
        row.value = value
    session.flush()
    return version_tags(session, version_id=mv.id)


def delete_version_tag(
    session: Session, *, model_name: str, version: int, key: str
) -> dict[str, str]:
    mv = get_version(session, model_name=model_name, version=version)
    row = session.scalars(
        select(VersionTag).where(VersionTag.model_version_id == mv.id, VersionTag.key == key)
    ).first()
    if row is None:
        raise TagNotFound(f"version {version} of model {model_name!r} has no tag {key!r}")
    session.delete(row)
    session.flush()
    return version_tags(session, version_id=mv.id)


class TagNotFound(VersionNotFound):
    code = "tag_not_found"


# Search -----------------------------------------------------------------------------------


def parse_order_by(order_by: str) -> tuple[str, str]:
    """`f1` or `f1.mean` → ("f1", "mean"); `f1.std` → ("f1", "std")."""
    metric, _, stat = order_by.partition(".")
    stat = stat or "mean"
    if stat not in METRIC_STATS:
        raise MetricUnknown(
            f"order_by {order_by!r}: the statistic must be one of {list(METRIC_STATS)} "
            f"(for example 'f1.mean')"
        )
    return metric, stat


def search_versions(
    session: Session,
    *,
    model_name: str,
    tags: Sequence[tuple[str, str | None]] = (),
    alias: str | None = None,
    dataset: str | None = None,
    archived: bool | None = None,
    order_by: str | None = None,
    descending: bool = False,
) -> list[ModelVersion]:
    """Versions of a model that carry every tag (`(key, None)`: any value), that `alias`
    points at, that were trained on `dataset` (its id or sha256), optionally archived or
    not, in version order or ordered by a stored metric (`f1.mean`, `rmse.std`).

    Versions without the metric come last whatever the direction. An order_by metric that
    no version of the model has is refused, naming those it has.
    """
    model = get_model(session, name=model_name)
    query = select(ModelVersion).where(ModelVersion.registered_model_id == model.id)
    for key, value in tags:
        check_tag(key)
        cond = [VersionTag.model_version_id == ModelVersion.id, VersionTag.key == key]
        if value is not None:
            cond.append(VersionTag.value == value)
        query = query.where(select(VersionTag.id).where(*cond).exists())
    if alias is not None:
        query = query.where(
            select(Alias.id)
            .where(
                Alias.model_version_id == ModelVersion.id,
                Alias.registered_model_id == model.id,
                Alias.name == alias,
            )
            .exists()
        )
    if dataset is not None:
        query = query.where(
            ModelVersion.dataset_id.in_(
                select(Dataset.id).where(or_(Dataset.id == dataset, Dataset.sha256 == dataset))
            )
        )
    if archived is not None:
        query = query.where(
            ModelVersion.archived_at.is_not(None)
            if archived
            else ModelVersion.archived_at.is_(None)
        )
    found = list(session.scalars(query.order_by(ModelVersion.version)).all())
    if order_by is None:
        return found
    metric, stat = parse_order_by(order_by)
    known = sorted(
        {
            name
            for (metrics,) in session.execute(
                select(ModelVersion.metrics).where(ModelVersion.registered_model_id == model.id)
            )
            for name in metrics
        }
    )
    if metric not in known:
        raise MetricUnknown(
            f"order_by {order_by!r}: no version of model {model_name!r} has a metric "
            f"{metric!r}; its metrics are {known}"
        )

    scores: dict[int, float] = {}
    for mv in found:
        got = (mv.metrics.get(metric) or {}).get(stat)
        if got is not None and not math.isnan(got):
            scores[mv.version] = float(got)
    present = [mv for mv in found if mv.version in scores]
    missing = [mv for mv in found if mv.version not in scores]
    present.sort(key=lambda mv: (scores[mv.version], mv.version), reverse=descending)
    return present + missing


# Archive and delete -----------------------------------------------------------------------


def archive_version(
    session: Session, *, model_name: str, version: int, archived: bool = True
) -> ModelVersion:
    """Archive (or unarchive) a version: kept on disk and servable by number or alias,
    but never served as the model's newest version."""
    mv = get_version(session, model_name=model_name, version=version)
    if archived and mv.archived_at is None:
        mv.archived_at = utcnow()
    elif not archived:
        mv.archived_at = None
    session.flush()
    return mv


def delete_version(session: Session, *, model_name: str, version: int) -> list[str]:
    """Delete a version no alias points at; return the artifact hashes nothing else uses.

    The caller deletes those from the artifact store after it commits (a rolled-back
    delete must not lose files). Versions and jobs that were retrained from this one keep
    their own lineage row but lose the link (`retrained_from` becomes null); the version
    number is never reused.
    """
    # The alias lock: an alias cannot be pointed at this version while it is deleted.
    lock_model(session, name=model_name)
    mv = get_version(session, model_name=model_name, version=version)
    pointing = session.scalars(
        select(Alias.name).where(Alias.model_version_id == mv.id).order_by(Alias.name)
    ).all()
    if pointing:
        raise VersionInUse(
            f"version {version} of model {model_name!r} cannot be deleted: alias(es) "
            f"{list(pointing)} point at it; move or delete them first"
        )
    hashes = {mv.onnx_sha256, mv.keras_sha256}
    for table in (ModelVersion, TrainingJob):
        session.execute(
            update(table)
            .where(table.retrained_from_id == mv.id)
            .values(retrained_from_id=None)
            .execution_options(synchronize_session=False)
        )
    session.execute(delete(VersionTag).where(VersionTag.model_version_id == mv.id))
    session.delete(mv)
    session.flush()
    return unreferenced(session, hashes=hashes)


def unreferenced(session: Session, *, hashes: set[str] | list[str]) -> list[str]:
    """The artifact hashes that no version (ONNX or Keras file) and no dataset uses."""
    wanted = set(hashes)
    used = set(
        session.scalars(
            select(ModelVersion.onnx_sha256).where(ModelVersion.onnx_sha256.in_(wanted))
        ).all()
    )
    used |= set(
        session.scalars(
            select(ModelVersion.keras_sha256).where(ModelVersion.keras_sha256.in_(wanted))
        ).all()
    )
    used |= set(session.scalars(select(Dataset.sha256).where(Dataset.sha256.in_(wanted))))
    return sorted(wanted - used)


# Lineage and comparison -------------------------------------------------------------------


def lineage(session: Session, *, model_name: str, version: int) -> dict[str, Any]:
    mv = get_version(session, model_name=model_name, version=version)
    job = session.get(TrainingJob, mv.job_id)
    assert job is not None
    ds = mv.dataset
    shape = ds.shape
    if shape is None:
        # Rows made before the shape column was filled: a table's features are every
        # column but the target.
        shape = [ds.n_rows, ds.n_columns - 1]
    parent: dict[str, Any] | None = None
    if mv.retrained_from_id is not None:
        src = session.get(ModelVersion, mv.retrained_from_id)
        if src is not None:
            parent = {"model_name": src.model_name, "version": src.version}
    return {
        "model_name": mv.model_name,
        "version": mv.version,
        "job": {
            "id": job.id,
            "state": job.state,
            "attempt": job.attempt,
            "worker": job.worker,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        },
        "spec": mv.spec,
        "seed": mv.spec.get("seed"),
        "dataset": {
            "id": ds.id,
            "name": ds.name,
            "source": ds.source,
            "kind": ds.kind,
            "sha256": ds.sha256,
            "shape": shape,
            "target": ds.target,
        },
        "library_versions": mv.library_versions,
        "device": mv.device,
        "retrained_from": parent,
    }


@dataclass(frozen=True)
class VersionMetrics:
    version: int
    summary: dict[str, dict[str, float]]
    folds: list[dict[str, Any]]


def compare(session: Session, *, model_name: str, numbers: Sequence[int]) -> dict[str, Any]:
    """Every metric of the given versions side by side: mean, std and per-fold values of
    each, and each version's difference from the first one named (mean minus mean; the
    first is the baseline, as in `compare?versions=<baseline>,<candidate>,…`)."""
    rows: list[VersionMetrics] = []
    for n in numbers:
        mv = get_version(session, model_name=model_name, version=n)
        folds = session.scalars(
            select(FoldMetric).where(FoldMetric.job_id == mv.job_id).order_by(FoldMetric.fold)
        ).all()
        rows.append(VersionMetrics(n, mv.metrics, [f.metrics for f in folds]))
    names: list[str] = []
    for r in rows:
        names.extend(m for m in r.summary if m not in names)
    base = rows[0]
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        base_mean = (base.summary.get(name) or {}).get("mean")
        per_version = []
        for r in rows:
            stats = r.summary.get(name)
            mean = None if stats is None else stats.get("mean")
            per_version.append(
                {
                    "version": r.version,
                    "mean": mean,
                    "std": None if stats is None else stats.get("std"),
                    "folds": [_scalar(f.get(name)) for f in r.folds],
                    "diff_from_baseline": (
                        None if mean is None or base_mean is None else mean - base_mean
                    ),
                }
            )
        out[name] = per_version
    return {
        "model_name": model_name,
        "baseline": base.version,
        "versions": list(numbers),
        "metrics": out,
    }


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
