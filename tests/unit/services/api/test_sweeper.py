"""services/api/sweeper.py: jobs whose worker died or whose message never went out are
sent again, to the queue their spec names; files that deleted versions left are removed
once the grace period is over."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from registry import jobs, versions
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.models import TrainingJob
from services.api.dispatch import Dispatcher
from services.api.sweeper import sweep_jobs, sweep_orphans
from services.settings import ApiSettings
from tests.factories import SPEC, make_job, make_version
from workers.celery_app import GPU_QUEUE, TRAINING_QUEUE, make_celery
from workers.jobrun import JobRun, run_job


def _queued_on(folder: Path) -> list[str]:
    # Kombu's filesystem transport names each message file <time>_<uuid>.<queue>.msg.
    return sorted(p.name.split(".", 1)[1].removesuffix(".msg") for p in folder.glob("*.msg"))


def test_the_sweeper_sends_a_lost_gpu_job_back_to_the_gpu_queue(
    own_api: tuple[TestClient, ApiSettings], own_db: str
) -> None:
    client, settings = own_api
    folder = settings.broker_dir / "queue"
    resp = client.post(
        "/jobs",
        json={
            "model_name": "route",
            "dataset": "sklearn:breast_cancer",
            "spec": {**SPEC, "device": "gpu"},
        },
    )
    job_id = resp.json()["id"]
    for message in folder.glob("*.msg"):
        message.unlink()  # a worker took it...
    sm = make_sessionmaker(make_engine(own_db))
    with sm() as session:
        assert jobs.claim_job(session, job_id=job_id, worker="gpu-node:1") is not None
        # ...and died: its last heartbeat is long ago.
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
        session.commit()

    celery = make_celery(None, folder.parent)
    resent = sweep_jobs(
        sm, Dispatcher(celery), heartbeat_timeout_s=60, max_attempts=3, requeue_after_s=3600
    )

    assert job_id in resent
    assert resent == [job_id]
    assert _queued_on(folder) == [GPU_QUEUE]


class RefusingBroker:
    """A broker that is down: every send fails, as Celery raises when Redis refuses."""

    def send_task(self, *_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("broker down")


def test_a_job_the_broker_refused_is_sent_by_the_sweeper(
    own_api: tuple[TestClient, ApiSettings], own_db: str
) -> None:
    client, settings = own_api
    folder = settings.broker_dir / "queue"
    client.app.state.dispatcher = Dispatcher(RefusingBroker())  # type: ignore[attr-defined,arg-type]
    resp = client.post(
        "/jobs", json={"model_name": "lost", "dataset": "sklearn:breast_cancer", "spec": SPEC}
    )
    # Accepted all the same: the row is committed, and recorded as not sent.
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert _queued_on(folder) == []
    sm = make_sessionmaker(make_engine(own_db))
    with sm() as session:
        assert jobs.get_job(session, job_id=job_id).enqueued_at is None
        # Older than the 30 s an accepting request is given to send its own message.
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id)
            .values(created_at=utcnow() - timedelta(minutes=1))
        )
        session.commit()

    dispatcher = Dispatcher(make_celery(None, settings.broker_dir))
    sent = sweep_jobs(sm, dispatcher, heartbeat_timeout_s=60, max_attempts=3, requeue_after_s=3600)

    assert sent == [job_id]
    assert _queued_on(folder) == [TRAINING_QUEUE]
    with sm() as session:
        assert jobs.get_job(session, job_id=job_id).enqueued_at is not None
    # Recorded as sent: the next sweep leaves it to the worker.
    assert (
        sweep_jobs(sm, dispatcher, heartbeat_timeout_s=60, max_attempts=3, requeue_after_s=3600)
        == []
    )


def test_a_deleted_versions_files_go_after_the_grace_period(
    own_api: tuple[TestClient, ApiSettings], own_db: str
) -> None:
    client, _ = own_api
    store = client.app.state.store  # type: ignore[attr-defined]
    sm = make_sessionmaker(make_engine(own_db))
    onnx, keras = store.put(b"onnx of v1"), store.put(b"keras of v1")
    with sm() as session:
        mv = make_version(session, model_name="gone", onnx_sha256=onnx, keras_sha256=keras)
        session.commit()
    assert client.delete(f"/models/gone/versions/{mv.version}").status_code == 204

    assert sweep_orphans(sm, store, grace_s=600) == []
    assert store.exists(onnx)
    assert store.exists(keras)
    assert sorted(sweep_orphans(sm, store, grace_s=0)) == sorted([onnx, keras])
    assert not store.exists(onnx)
    assert not store.exists(keras)
    assert sweep_orphans(sm, store, grace_s=0) == []
    with sm() as session:
        assert versions.get_model(session, name="gone").versions == []


class FlakyBroker:
    """A dispatcher whose broker is down until `up`; it records the jobs it sent."""

    def __init__(self, *, up: bool) -> None:
        self.up = up
        self.sent: list[str] = []

    def send(self, job_id: str, _spec: Any) -> bool:
        if self.up:
            self.sent.append(job_id)
        return self.up


def _sweep(sm: sessionmaker[Session], broker: FlakyBroker) -> list[str]:
    defaults = ApiSettings.model_fields
    return sweep_jobs(
        sm,
        broker,  # type: ignore[arg-type]
        heartbeat_timeout_s=60,
        max_attempts=3,
        requeue_after_s=defaults["job_requeue_after_s"].default,
    )


def _age(sm: sessionmaker[Session], job_id: str, **seconds_ago: float) -> None:
    with sm() as session:
        session.execute(
            update(TrainingJob)
            .where(TrainingJob.id == job_id)
            .values({k: utcnow() - timedelta(seconds=s) for k, s in seconds_ago.items()})
        )
        session.commit()


def test_by_default_a_lost_message_is_sent_again_within_a_minute() -> None:
    # The requirement, in the defaults: a message is sent again once it is
    # JOB_REQUEUE_AFTER_S old, by a sweep that comes every JOB_SWEEP_INTERVAL_S.
    defaults = ApiSettings.model_fields
    assert defaults["job_requeue_after_s"].default + defaults["job_sweep_interval_s"].default <= 60


def test_a_job_submitted_while_the_broker_was_down_is_sent_once_it_is_back(
    own_api: tuple[TestClient, ApiSettings], own_db: str
) -> None:
    client, _ = own_api
    broker = FlakyBroker(up=False)
    client.app.state.dispatcher = broker  # type: ignore[attr-defined]
    resp = client.post(
        "/jobs", json={"model_name": "down", "dataset": "sklearn:breast_cancer", "spec": SPEC}
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    sm = make_sessionmaker(make_engine(own_db))
    _age(sm, job_id, created_at=60)

    assert _sweep(sm, broker) == []  # still down: nothing sent, nothing recorded as sent
    with sm() as session:
        assert jobs.get_job(session, job_id=job_id).enqueued_at is None

    broker.up = True
    assert _sweep(sm, broker) == [job_id]
    assert _sweep(sm, broker) == []  # recorded as sent: the next sweep leaves it
    assert broker.sent == [job_id]


def test_a_message_lost_in_a_broker_restart_is_sent_again_and_the_job_runs_once(
    own_db: str,
) -> None:
    sm = make_sessionmaker(make_engine(own_db))
    with sm() as session:
        job_id = make_job(session, model_name="lost").id
        jobs.mark_enqueued(session, job_id=job_id)
        session.commit()
    broker = FlakyBroker(up=True)
    assert _sweep(sm, broker) == []  # just sent: the worker has time to take it

    # The broker restarted and forgot the message (it was never claimed).
    _age(sm, job_id, created_at=120, enqueued_at=31)
    assert _sweep(sm, broker) == [job_id]

    # Had the first message survived after all, both are delivered: one run, one attempt.
    ran: list[int] = []

    def body(run: JobRun) -> str:
        ran.append(run.attempt)
        return "done"

    outcomes = [run_job(job_id, sm=sm, heartbeat_interval_s=3600, body=body) for _ in range(2)]

    assert outcomes == ["done", "skipped: not queued"]
    assert ran == [1]
    with sm() as session:
        assert jobs.get_job(session, job_id=job_id).attempt == 1
