"""GPU routing without a GPU: a spec with device 'gpu' puts its message on the
training-gpu queue (read back from the real filesystem broker), and a worker's
WORKER_QUEUES decides what it consumes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry.migrate import upgrade
from services.api.app import create_app
from services.settings import ApiSettings
from tests.factories import SPEC
from workers.celery_app import GPU_QUEUE, TRAINING_QUEUE, consumed_queues, queue_for
from workers.settings import WorkerSettings


@pytest.fixture
def own_db(tmp_path: Path) -> str:
    # Its own registry: a built-in dataset materialised by another test's API would point
    # at an artifact in that test's store.
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    upgrade(url)
    return url


@pytest.fixture
def api(tmp_path: Path, own_db: str) -> Iterator[tuple[TestClient, Path]]:
    settings = ApiSettings(
        kiln_home=tmp_path, database_url=own_db, redis_url=None, job_sweep_interval_s=3600
    )
    with TestClient(create_app(settings)) as client:
        yield client, settings.broker_dir / "queue"


def _queued_on(folder: Path) -> list[str]:
    # Kombu's filesystem transport names each message file <time>_<uuid>.<queue>.msg.
    return sorted(p.name.split(".", 1)[1].removesuffix(".msg") for p in folder.glob("*.msg"))


def test_gpu_jobs_go_to_the_gpu_queue(api: tuple[TestClient, Path]) -> None:
    client, folder = api
    body = {"model_name": "route", "dataset": "sklearn:breast_cancer"}

    gpu = client.post("/jobs", json={**body, "spec": {**SPEC, "device": "gpu"}})
    assert gpu.status_code == 202, gpu.text
    assert _queued_on(folder) == [GPU_QUEUE]

    auto = client.post("/jobs", json={**body, "spec": SPEC})
    assert auto.status_code == 202, auto.text
    assert _queued_on(folder) == [TRAINING_QUEUE, GPU_QUEUE]
    assert client.get(auto.headers["location"]).json()["spec"]["device"] == "auto"

    bad = client.post("/jobs", json={**body, "spec": {**SPEC, "device": "tpu"}})
    assert bad.status_code == 422
    assert "device" in bad.text


def test_queue_for_reads_the_stored_spec() -> None:
    assert queue_for({"device": "gpu"}) == "training-gpu"
    assert queue_for({"device": "auto"}) == "training"
    # Specs stored before the field existed have no device: the CPU queue, as before.
    assert queue_for({}) == "training"


def test_worker_queues_come_from_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_QUEUES", "training, training-gpu")
    monkeypatch.setenv("WORKER_FOLD_PROCESSES", "3")
    settings = WorkerSettings()

    assert [q.name for q in consumed_queues(settings.worker_queues)] == [
        "training",
        "training-gpu",
    ]
    assert settings.worker_fold_processes == 3
    with pytest.raises(ValueError, match="no queue named"):
        consumed_queues(" , ")
    monkeypatch.delenv("WORKER_QUEUES")
    assert [q.name for q in consumed_queues(WorkerSettings().worker_queues)] == ["training"]


def test_the_sweeper_sends_a_lost_gpu_job_back_to_the_gpu_queue(
    api: tuple[TestClient, Path], own_db: str
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from registry import jobs
    from registry.db import make_engine, make_sessionmaker, utcnow
    from registry.models import TrainingJob
    from services.api.sweeper import sweep_once
    from workers.celery_app import make_celery

    client, folder = api
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
    resent = sweep_once(sm, celery, heartbeat_timeout_s=60, max_attempts=3, requeue_after_s=3600)

    assert job_id in resent
    assert resent == [job_id]
    assert _queued_on(folder) == [GPU_QUEUE]
