from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from core.access import Scope
from registry import searches
from services.api.auth import ReadCaller, TrainCaller, needs
from services.api.deps import QueueingDep, SessionDep
from services.api.schemas import Limit, Offset, Page, Text
from services.api.search_schemas import SearchAccepted, SearchCreate, SearchRead
from services.api.search_views import search_read, search_url
from services.api.usecases import searches as usecases
from services.problems import responses

router = APIRouter(prefix="/searches", tags=["searches"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a model search",
    responses=responses(404, 429),
)
def submit_search(
    request: Request, response: Response, body: SearchCreate, q: QueueingDep
) -> SearchAccepted:
    """Search the space around a base spec: Optuna (TPE) samples each trial's parameters,
    every trial trains the same folds as a job of kind `trial` on any worker
    (`budget.parallel` at once), trials whose fold scores fall behind the best one's are
    pruned between folds (WilcoxonPruner), and the best trial is refit, exported and
    registered as a version of `model_name` whose lineage names the search and the trial.

    Every end of every dimension is checked against the dataset here: a space that
    cannot train is refused with 422 naming the dimension. Poll `Location` for the
    leaderboard.
    """
    q.who.require(Scope.TRAIN, model=body.model_name)
    search = usecases.submit(q, body)
    url = search_url(request, search)
    response.headers["Location"] = url
    return SearchAccepted(id=search.id, state=search.state, links={"self": url})


@router.get("/{search_id}", summary="A search and its leaderboard", responses=responses(404))
def get_search(
    request: Request, session: SessionDep, who: ReadCaller, search_id: Text
) -> SearchRead:
    """State, every trial with its parameters, per-fold scores, mean ± std of every
    metric, state (running, pruned, complete, failed with its reason) and time, best
    first; the shared fold assignment's hash; and the best trial's refit (and those of
    the next best, up to options.refit_top) with its version once registered."""
    search = searches.view(session, search_id=search_id)
    who.require(Scope.READ, model=search.model_name)
    return search_read(request, search)


@router.get("", summary="List searches", dependencies=[needs(Scope.READ)])
def list_searches(
    request: Request, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[SearchRead]:
    rows = searches.searches(session, limit=limit, offset=offset)
    return Page[SearchRead](
        items=[search_read(request, s) for s in rows], limit=limit, offset=offset
    )


@router.post("/{search_id}/cancel", summary="Cancel a search", responses=responses(404, 409))
def cancel_search(
    request: Request, session: SessionDep, who: TrainCaller, search_id: Text
) -> SearchRead:
    """Cancel a queued or running search: its running trials stop at their next batch
    (within seconds), queued ones never start, and no refit is queued."""
    usecases.cancel(session, search_id=search_id, caller=who)
    return search_read(request, searches.view(session, search_id=search_id))
