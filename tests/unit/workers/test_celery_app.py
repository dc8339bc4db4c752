"""workers/celery_app.py: GPU routing without a GPU: a spec with device 'gpu' puts its
message on the training-gpu queue (read back from the real filesystem broker), and a
worker's WORKER_QUEUES decides what it consumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.settings import ApiSettings
from tests.factories import SPEC
from workers.celery_app import GPU_QUEUE, TRAINING_QUEUE, consumed_queues, queue_for
from workers.settings import WorkerSettings


@pytest.fixture
def api(own_api: tuple[TestClient, ApiSettings]) -> tuple[TestClient, Path]:
    client, settings = own_api
    return client, settings.broker_dir / "queue"


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
