"""What one API key may ask of Kiln: how often it submits (a rate limit from `limits`,
kept in Redis when Kiln has one so every API process counts together), how many of its
jobs may wait or run at once, and how large a spec may be (parameters, and epochs ×
rows × fits). Each refusal names the limit and the setting that sets it
(docs/decisions/0018)."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import parse, storage, strategies
from sqlalchemy.orm import Session

from registry import jobs
from services.api.auth import Caller, TrainCaller
from services.api.errors import RateLimited, SpecOverLimit, TooManyActiveJobs
from services.settings import ApiSettings
from training.spec import DataInfo, ModelSpec, count_parameters, input_shape

log = logging.getLogger("kiln.api")


class SubmissionLimiter:
    """`QUOTA_SUBMISSIONS` (e.g. "60/minute") per key: jobs, retrains and uploads."""

    def __init__(self, settings: ApiSettings) -> None:
        self.limit = parse(settings.quota_submissions) if settings.quota_submissions else None
        uri = settings.redis_url or "memory://"
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(uri))
        self._warned = False

    def hit(self, who: str) -> None:
        if self.limit is None:
            return
        try:
            allowed = self._limiter.hit(self.limit, "submissions", who)
        except Exception as exc:  # the limiter's Redis is down: let work in, say so once
            if not self._warned:
                log.warning("the submission rate limit cannot be checked now: %s", exc)
            self._warned = True
            return
        self._warned = False
        if not allowed:
            reset, _ = self._limiter.get_window_stats(self.limit, "submissions", who)
            raise RateLimited(
                f"{who} sent more than {self.limit} submissions (QUOTA_SUBMISSIONS); "
                "try again after Retry-After seconds",
                retry_after_s=max(1.0, reset - time.time()),
            )


def check_active_jobs(session: Session, owner: str | None, settings: ApiSettings) -> None:
    """At most `QUOTA_ACTIVE_JOBS` queued or running jobs per key (not checked when Kiln
    runs open: anonymous jobs have no owner to count by)."""
    if owner is None or not settings.quota_active_jobs:
        return
    active = jobs.count_active(session, owner=owner)
    if active >= settings.quota_active_jobs:
        raise TooManyActiveJobs(
            f"{owner} has {active} jobs queued or running, the most one key may have "
            f"(QUOTA_ACTIVE_JOBS={settings.quota_active_jobs}); wait for one to finish or "
            "cancel one",
            retry_after_s=30,
        )


def check_spec_size(spec: ModelSpec, data: DataInfo, settings: ApiSettings) -> None:
    """Refuse (422) a spec whose model or whose training is larger than the settings allow."""
    parameters = count_parameters(spec.layers, input_shape(spec, data))
    if parameters > settings.spec_max_parameters:
        raise SpecOverLimit(
            f"the spec's model has {parameters:,} parameters; the limit is "
            f"{settings.spec_max_parameters:,} (SPEC_MAX_PARAMETERS). Use fewer or "
            "smaller layers"
        )
    fits = spec.n_folds + 1  # every fold, then the refit on all rows
    work = spec.epochs * data.n_rows * fits
    if work > settings.spec_max_epoch_rows:
        raise SpecOverLimit(
            f"the spec trains {spec.epochs} epochs × {data.n_rows:,} rows × {fits} fits "
            f"(k_folds + the refit) = {work:,} row passes; the limit is "
            f"{settings.spec_max_epoch_rows:,} (SPEC_MAX_EPOCH_ROWS). Use fewer epochs or "
            "folds, or early stopping with fewer epochs"
        )


def limit_submissions(request: Request, who: TrainCaller) -> Caller:
    """The caller of a submission route, counted against its key's submission rate (an
    open Kiln's anonymous callers have no key to count by, as for active jobs)."""
    if who.owner is not None:
        limiter: SubmissionLimiter = request.app.state.submissions
        limiter.hit(who.owner)
    return who


SubmitCaller = Annotated[Caller, Depends(limit_submissions)]
