"""Background recovery in every API process: jobs whose worker died or whose message was
lost, artifact files that deleted versions left behind, and expired idempotency keys.

The conditional updates in registry.jobs and the locking in registry.orphans make
several sweepers side by side safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from registry import jobs, orphans, searches
from registry.artifacts import ArtifactStore
from registry.db import utcnow
from services.api import idempotency
from services.api.dispatch import Dispatcher, send_committed

log = logging.getLogger("kiln.sweeper")


def sweep_jobs(
    sm: sessionmaker[Session],
    dispatcher: Dispatcher,
    *,
    heartbeat_timeout_s: float,
    max_attempts: int,
    requeue_after_s: float,
) -> list[str]:
    """Queue again (or fail) jobs whose heartbeat stopped, and send again the queued jobs
    whose message went missing; return the ids sent."""
    with sm() as session:
        resend = jobs.sweep_stale_jobs(
            session,
            heartbeat_timeout=timedelta(seconds=heartbeat_timeout_s),
            max_attempts=max_attempts,
            requeue_after=timedelta(seconds=requeue_after_s),
        )
        session.commit()
        sent = [
            job_id
            for job_id in resend
            if dispatcher.send(job_id, jobs.get_job(session, job_id=job_id).spec)
        ]
        for job_id in sent:
            jobs.mark_enqueued(session, job_id=job_id)
        session.commit()
    if sent:
        log.warning("sent again: %s", sent)
    return sent


def sweep_searches(sm: sessionmaker[Session], dispatcher: Dispatcher) -> list[str]:
    """Advance every active search: a trial that its worker never reported the end of
    (given up by `sweep_jobs`, or a worker that died between its trial's end and the
    advance) must not leave its search waiting. Return the ids of the jobs sent."""
    with sm() as session:
        active = searches.active_ids(session)
    sent: list[str] = []
    for search_id in active:
        with sm() as session:
            queued = searches.advance(session, search_id=search_id)
            session.commit()
            sent.extend(send_committed(dispatcher, session, queued))
    if sent:
        log.info("search trials sent: %s", sent)
    return sent


def sweep_orphans(sm: sessionmaker[Session], store: ArtifactStore, *, grace_s: float) -> list[str]:
    """Remove the files that deleted versions left unreferenced, once their mark is older
    than ``grace_s``; return their hashes. Each file in its own transaction, committed
    after the file is gone (registry.orphans says why)."""
    grace = timedelta(seconds=grace_s)
    with sm() as session:
        due = orphans.due(session, grace=grace)
    removed: list[str] = []
    for digest in due:
        with sm() as session:
            if orphans.take(session, digest, grace=grace):
                store.delete(digest)
                removed.append(digest)
            session.commit()
    if removed:
        log.info("removed %d unreferenced artifact(s): %s", len(removed), removed)
    return removed


def sweep_idempotency_keys(sm: sessionmaker[Session], *, ttl_s: float) -> int:
    with sm() as session:
        gone = idempotency.expire(session, now=utcnow(), ttl_s=ttl_s)
        session.commit()
    if gone:
        log.info("removed %d expired idempotency key(s)", gone)
    return gone


class Sweeper(threading.Thread):
    def __init__(
        self,
        interval_s: float,
        *,
        sm: sessionmaker[Session],
        dispatcher: Dispatcher,
        store: ArtifactStore,
        heartbeat_timeout_s: float,
        max_attempts: int,
        requeue_after_s: float,
        orphan_grace_s: float,
        idempotency_ttl_s: float = 86400.0,
    ) -> None:
        super().__init__(name="kiln-sweeper", daemon=True)
        self._interval = interval_s
        self._stop_event = threading.Event()
        self._sweeps: tuple[Callable[[], object], ...] = (
            lambda: sweep_jobs(
                sm,
                dispatcher,
                heartbeat_timeout_s=heartbeat_timeout_s,
                max_attempts=max_attempts,
                requeue_after_s=requeue_after_s,
            ),
            lambda: sweep_searches(sm, dispatcher),
            lambda: sweep_orphans(sm, store, grace_s=orphan_grace_s),
            lambda: sweep_idempotency_keys(sm, ttl_s=idempotency_ttl_s),
        )

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            for sweep in self._sweeps:
                try:
                    sweep()
                except Exception:
                    log.exception("sweep failed; trying again in %.0f s", self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
