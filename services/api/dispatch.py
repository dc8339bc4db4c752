"""Sends jobs to the workers, by task name, once their rows are committed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnreachable
from sqlalchemy.orm import Session

from registry import jobs
from registry.models import TrainingJob
from workers.celery_app import TASK_TRAIN, queue_for

log = logging.getLogger("kiln.api")


class Dispatcher:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send(self, job_id: str, spec: Mapping[str, Any]) -> bool:
        """Send the job's id to its queue; False (and a log line) when the broker refused.

        A job that was not sent stays queued in the registry, and the sweeper sends it."""
        try:
            self.celery.send_task(TASK_TRAIN, args=[job_id], queue=queue_for(spec))
        except (BrokerUnreachable, OSError) as exc:
            # Kombu has already retried the connection; an outage is one line a job, not
            # a traceback that says nothing more.
            log.warning(
                "could not send job %s: the broker is not answering (%s); "
                "the sweeper sends it later",
                job_id,
                str(exc).strip().partition("\n")[0] or type(exc).__name__,
            )
            return False
        except Exception:
            log.exception("could not send job %s to the broker; the sweeper will retry", job_id)
            return False
        return True

    def queue_depths(self, queues: Sequence[str]) -> dict[str, int] | None:
        """Messages waiting in each of ``queues``; None when the broker does not answer."""
        try:
            with self.celery.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1)
                channel = conn.default_channel
                # A declare (not passive: an empty Redis queue is no key at all) answers
                # with the count, on Redis and on the filesystem transport alike.
                return {q: int(channel.queue_declare(queue=q).message_count) for q in queues}
        except (BrokerUnreachable, OSError) as exc:
            log.warning("metrics: the broker did not answer (%s)", type(exc).__name__)
            return None


def send_committed(
    dispatcher: Dispatcher, session: Session, queued: Sequence[TrainingJob]
) -> list[str]:
    """Send jobs whose rows are committed; one the broker refused is marked unsent, for
    the sweeper to send. The ids sent."""
    sent = []
    for job in queued:
        if dispatcher.send(job.id, job.spec):
            sent.append(job.id)
        else:
            jobs.mark_enqueued(session, job_id=job.id, sent=False)
            session.commit()
    return sent
