"""Find a model's versions by tag, alias, dataset and archived state, ordered by a metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from registry.errors import MetricUnknown
from registry.models import Alias, Dataset, ModelVersion, VersionTag
from registry.tags import check_tag
from registry.versions import get_model
from registry.views import VERSION_DETAILS

METRIC_STATS = ("mean", "std")


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
    no version of the model has is refused, naming those it has. Loaded with what a
    version's view shows (registry.views).
    """
    model = get_model(session, name=model_name)
    query = select(ModelVersion).where(ModelVersion.registered_model_id == model.id)
    for condition in _conditions(model.id, tags, alias, dataset, archived):
        query = query.where(condition)
    found = list(session.scalars(query.options(*VERSION_DETAILS).order_by(ModelVersion.version)))
    if order_by is None:
        return found
    metric, stat = parse_order_by(order_by)
    _check_metric(session, model_name, model.id, metric, order_by)
    scores: dict[int, float] = {}
    for mv in found:
        got = (mv.metrics.get(metric) or {}).get(stat)
        if got is not None and not math.isnan(got):
            scores[mv.version] = float(got)
    present = [mv for mv in found if mv.version in scores]
    missing = [mv for mv in found if mv.version not in scores]
    present.sort(key=lambda mv: (scores[mv.version], mv.version), reverse=descending)
    return present + missing


def _conditions(
    model_id: int,
    tags: Sequence[tuple[str, str | None]],
    alias: str | None,
    dataset: str | None,
    archived: bool | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for key, value in tags:
        check_tag(key)
        cond = [VersionTag.model_version_id == ModelVersion.id, VersionTag.key == key]
        if value is not None:
            cond.append(VersionTag.value == value)
        conditions.append(select(VersionTag.id).where(*cond).exists())
    if alias is not None:
        conditions.append(
            select(Alias.id)
            .where(
                Alias.model_version_id == ModelVersion.id,
                Alias.registered_model_id == model_id,
                Alias.name == alias,
            )
            .exists()
        )
    if dataset is not None:
        conditions.append(
            ModelVersion.dataset_id.in_(
                select(Dataset.id).where(or_(Dataset.id == dataset, Dataset.sha256 == dataset))
            )
        )
    if archived is not None:
        conditions.append(
            ModelVersion.archived_at.is_not(None)
            if archived
            else ModelVersion.archived_at.is_(None)
        )
    return conditions


def _check_metric(
    session: Session, model_name: str, model_id: int, metric: str, order_by: str
) -> None:
    known = sorted(
        {
            name
            for (metrics,) in session.execute(
                select(ModelVersion.metrics).where(ModelVersion.registered_model_id == model_id)
            )
            for name in metrics
        }
    )
    if metric not in known:
        raise MetricUnknown(
            f"order_by {order_by!r}: no version of model {model_name!r} has a metric "
            f"{metric!r}; its metrics are {known}"
        )
