"""The Celery application, shared by the API (to send) and the worker (to run).

No task bodies live here: the API imports this module and must never load TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.entity import Queue

TASK_TRAIN = "kiln.training.run"
TRAINING_QUEUE = "training"
# Consumed only by workers on GPU nodes (WORKER_QUEUES=training-gpu).
GPU_QUEUE = "training-gpu"


def queue_for(spec: Mapping[str, Any]) -> str:
    """The queue a job's message goes to: the spec's ``device`` "gpu" → the GPU queue."""
    return GPU_QUEUE if spec.get("device") == "gpu" else TRAINING_QUEUE


def consumed_queues(names: str) -> list[Queue]:
    """Celery's ``task_queues`` for a worker from a comma-separated list of queue names."""
    queues = [Queue(n.strip()) for n in names.split(",") if n.strip()]  # type: ignore[no-untyped-call]
    if not queues:
        raise ValueError(f"no queue named in {names!r}; expected e.g. 'training,training-gpu'")
    return queues


def broker_options(
    redis_url: str | None, broker_dir: Path, visibility_timeout_s: int
) -> dict[str, Any]:
    """Redis when a URL is given; otherwise Kombu's filesystem transport in `broker_dir`.

    The filesystem transport is a real broker that needs no server: messages are files
    that every process on the machine sees, which is what the embedded mode needs.
    """
    if redis_url:
        return {
            "broker_url": redis_url,
            "broker_transport_options": {"visibility_timeout": visibility_timeout_s},
        }
    queue = broker_dir / "queue"
    processed = broker_dir / "processed"
    control = broker_dir / "control"
    for folder in (queue, processed, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            "control_folder": str(control),
            "store_processed": False,
        },
    }


def make_celery(
    redis_url: str | None, broker_dir: Path, visibility_timeout_s: int = 43200
) -> Celery:
    app = Celery("kiln")
    app.conf.update(
        **broker_options(redis_url, broker_dir, visibility_timeout_s),
        # The registry is the source of truth for jobs; a result backend would be a second one.
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        # A job is acknowledged only after it ends, and given back if its process dies,
        # so a crash loses no accepted job. Tasks are idempotent by their job row.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_routes={TASK_TRAIN: {"queue": TRAINING_QUEUE}},
        task_default_queue=TRAINING_QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Task events, so Flower and celery-exporter see received, started and finished
        # tasks (and sent ones, from the API).
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app
