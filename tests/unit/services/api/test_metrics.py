"""The API's /metrics: requests by route template and status, and what the registry and
the broker hold (an in-process API on its own SQLite registry and filesystem broker, with
no worker, so a submitted job stays queued and its message waits in the queue)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.settings import ApiSettings
from tests.factories import mlp
from tests.unit.services.predict.models import metric_sample

JOB = {"model_name": "watched", "dataset": "sklearn:breast_cancer", "spec": mlp(4, epochs=2)}


def test_requests_are_counted_by_route_template_and_status(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, _ = own_api
    job = client.post("/jobs", json=JOB).json()
    for _ in range(3):
        assert client.get(f"/jobs/{job['id']}").status_code == 200
    assert client.get("/jobs/not-a-job").status_code == 404
    assert client.get("/no/such/route").status_code == 404
    text = client.get("/metrics").text

    def requests(method: str, route: str, status: str) -> float | None:
        labels = {"method": method, "route": route, "status": status}
        return metric_sample(text, "kiln_api_requests_total", labels)

    assert requests("POST", "/jobs", "202") == 1
    # The template, never the id: clients cannot grow the series.
    assert requests("GET", "/jobs/{job_id}", "200") == 3
    assert requests("GET", "/jobs/{job_id}", "404") == 1
    assert requests("GET", "unmatched", "404") == 1
    assert job["id"] not in text
    count = {"method": "GET", "route": "/jobs/{job_id}"}
    assert metric_sample(text, "kiln_api_request_duration_seconds_count", count) == 4


def test_jobs_and_queues_are_read_from_the_registry_and_the_broker(
    own_api: tuple[TestClient, ApiSettings],
) -> None:
    client, _ = own_api
    before = client.get("/metrics").text
    assert metric_sample(before, "kiln_registry_up", {}) == 1
    assert metric_sample(before, "kiln_broker_up", {}) == 1
    assert metric_sample(before, "kiln_queue_messages", {"queue": "training"}) == 0
    assert metric_sample(before, "kiln_jobs", {"state": "queued", "kind": "train"}) is None

    client.post("/jobs", json=JOB)
    client.post("/jobs", json={**JOB, "spec": mlp(4, epochs=2, device="gpu")})
    cancelled = client.post("/jobs", json=JOB).json()
    client.post(f"/jobs/{cancelled['id']}/cancel")
    after = client.get("/metrics").text
    assert metric_sample(after, "kiln_jobs", {"state": "queued", "kind": "train"}) == 2
    assert metric_sample(after, "kiln_jobs", {"state": "cancelled", "kind": "train"}) == 1
    # The cancelled job's message is still in the queue: its worker drops it on claim.
    assert metric_sample(after, "kiln_queue_messages", {"queue": "training"}) == 2
    assert metric_sample(after, "kiln_queue_messages", {"queue": "training-gpu"}) == 1
    # No job has finished: the histograms are there, empty.
    assert metric_sample(after, "kiln_fold_duration_seconds_count", {}) == 0
