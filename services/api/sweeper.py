"""Background recovery of jobs whose worker died or whose message was lost.

It runs in every API process; the conditional updates in registry.jobs make several of
them safe side by side.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from registry import jobs
from workers.celery_app import TASK_TRAIN, queue_for

log = logging.getLogger("kiln.sweeper")


def sweep_once(
    sm: sessionmaker[Session],
    celery: Celery,
    *,
    heartbeat_timeout_s: float,
    max_attempts: int,
    requeue_after_s: float,
) -> list[str]:
    with sm() as session:
        resend = jobs.sweep_stale_jobs(
            session,
            heartbeat_timeout=timedelta(seconds=heartbeat_timeout_s),
            max_attempts=max_attempts,
            requeue_after=timedelta(seconds=requeue_after_s),
        )
        session.commit()
        for job_id in resend:
            spec = jobs.get_job(session, job_id=job_id).spec
            celery.send_task(TASK_TRAIN, args=[job_id], queue=queue_for(spec))
            jobs.mark_enqueued(session, job_id=job_id)
            session.commit()
    if resend:
        log.warning("sent again: %s", resend)
    return resend


class Sweeper(threading.Thread):
    def __init__(self, interval_s: float, **kwargs: object) -> None:
        super().__init__(name="kiln-sweeper", daemon=True)
        self._interval = interval_s
        self._kwargs = kwargs
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                sweep_once(**self._kwargs)  # type: ignore[arg-type]
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
