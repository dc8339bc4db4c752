"""Submit and cancel model searches. A search's trials are jobs (registry.searches)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.errors import KilnError
from core.vocabulary import DataKind
from registry import searches
from registry.db import utcnow
from registry.errors import InvalidState
from registry.models import Search
from services.api import quotas
from services.api.auth import Caller
from services.api.deps import Queueing
from services.api.dispatch import send_committed
from services.api.errors import SearchInvalid
from services.api.search_schemas import SearchCreate
from services.api.usecases import datasets
from services.api.usecases.jobs import data_info, may_cancel
from training.spec import DataInfo, check_against_data
from training.spec.search import FAMILIES, METRICS, corners, trial_spec


def submit(q: Queueing, body: SearchCreate) -> Search:
    """Queue a search once its base spec and every end of its space can train on the
    dataset (422 naming the dimension otherwise); its first trials go out at once."""
    dataset = datasets.resolve(q.session, q.store, body.dataset)
    data = data_info(dataset)
    check(body, data, q)
    quotas.check_active_jobs(q.session, q.who.owner, q.settings)
    objective = body.objective
    search = Search(
        model_name=body.model_name,
        dataset_id=dataset.id,
        spec=body.spec.model_dump(mode="json"),
        space=body.space.model_dump(mode="json", exclude_none=True),
        objective={
            "metric": objective.metric,
            "direction": "maximize" if objective.maximize else "minimize",
        },
        budget=body.budget.model_dump(mode="json"),
        options=body.options.model_dump(mode="json"),
        owner=q.who.owner,
        deadline_at=utcnow() + timedelta(seconds=body.budget.wall_s),
    )
    queued = searches.add_search(q.session, search)
    q.session.commit()
    send_committed(q.dispatcher, q.session, queued)
    return search


def check(body: SearchCreate, data: DataInfo, q: Queueing) -> None:
    base, space = body.spec, body.space
    check_against_data(base, data)
    quotas.check_spec_size(base, data, q.settings)
    if not base.cross_validation:
        raise SearchInvalid(
            "a search ranks trials by their folds: spec.cross_validation must be true"
        )
    metrics = METRICS[base.task]
    if body.objective.metric not in metrics:
        raise SearchInvalid(
            f"objective.metric {body.objective.metric!r} is not a score of task "
            f"{base.task.value!r}; expected one of {list(metrics)}"
        )
    kind = DataKind.SEQUENCE if base.window is not None else DataKind(data.kind)
    allowed = FAMILIES[kind]
    for family in space.family or ():
        if family not in allowed:
            raise SearchInvalid(
                f"space.family {family!r} does not read {kind.value} data; expected some of "
                f"{list(allowed)}"
            )
    for label, params in corners(space):
        try:
            spec = trial_spec(base, params, kind=kind)
            check_against_data(spec, data)
            quotas.check_spec_size(spec, data, q.settings)
        except ValidationError as exc:
            raise SearchInvalid(f"space: {label} gives no valid spec: {_first(exc)}") from exc
        except KilnError as exc:
            raise SearchInvalid(f"space: {label} cannot train on this dataset: {exc}") from exc


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def cancel(session: Session, *, search_id: str, caller: Caller) -> Search:
    """Cancel a search and its queued and running trials (and refit); only its owner or
    an admin may (403 otherwise)."""
    search = searches.get_search(session, search_id=search_id)
    may_cancel(caller, f"search {search_id}", model=search.model_name, owner=search.owner)
    if not searches.cancel_search(session, search_id=search_id):
        raise InvalidState(
            f"search {search_id} is {search.state}; only a queued or running search can be "
            "cancelled"
        )
    session.commit()
    return search
