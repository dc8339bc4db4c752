"""Prometheus metrics from every process of a real `kiln up` on PostgreSQL + Redis, read
after a job that succeeds and one that fails: the API's (requests by route, jobs by state
and kind, failures by reason, job and fold durations, queue depth), the worker's own port,
and a predictor with two processes whose totals do not depend on which one answers."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import Stack, free_port
from tests.factories import mlp
from tests.unit.services.predict.models import metric_sample

pytestmark = pytest.mark.e2e

WORKER_METRICS_PORT = free_port()
STACK_ENV = {"PREDICT_WORKERS": "2", "WORKER_METRICS_PORT": str(WORKER_METRICS_PORT)}
# A learning rate that makes the loss NaN in the first epoch: the worker fails the job.
DIVERGING = mlp(
    32, task="regression", optimizer={"name": "sgd", "learning_rate": 10.0}, epochs=3, k_folds=2
)


def _wait(client: httpx.Client, url: str, timeout: float = 240) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, object] = client.get(url).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"{url} did not end in {timeout}s")


@pytest.mark.parametrize("stack", ["postgres+redis"], indirect=True)
def test_every_process_reports_what_happened(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.env['KILN_API_KEY']}"}
    api = httpx.Client(base_url=stack.api, headers=auth, timeout=30)
    good = api.post(
        "/jobs",
        json={
            "model_name": "watched",
            "dataset": "sklearn:breast_cancer",
            "spec": mlp(8, epochs=3, k_folds=3),
        },
    )
    bad = api.post(
        "/jobs", json={"model_name": "diverges", "dataset": "sklearn:diabetes", "spec": DIVERGING}
    )
    assert (good.status_code, bad.status_code) == (202, 202), (good.text, bad.text)
    assert _wait(api, good.headers["location"])["state"] == "succeeded"
    failed = _wait(api, bad.headers["location"])
    assert failed["state"] == "failed"
    assert str(failed["reason"]).startswith("non_finite_loss")
    k = 3

    text = api.get("/metrics").text
    assert metric_sample(text, "kiln_jobs", {"state": "succeeded", "kind": "train"}) == 1
    assert metric_sample(text, "kiln_jobs", {"state": "failed", "kind": "train"}) == 1
    assert metric_sample(text, "kiln_job_failures_total", {"reason": "non_finite_loss"}) == 1
    done = {"state": "succeeded", "kind": "train"}
    assert metric_sample(text, "kiln_job_duration_seconds_count", done) == 1
    assert (metric_sample(text, "kiln_job_duration_seconds_sum", done) or 0) > 0
    assert metric_sample(text, "kiln_fold_duration_seconds_count", {}) == k
    assert metric_sample(text, "kiln_queue_messages", {"queue": "training"}) == 0
    submitted = {"method": "POST", "route": "/jobs", "status": "202"}
    assert metric_sample(text, "kiln_api_requests_total", submitted) == 2
    polled = {"method": "GET", "route": "/jobs/{job_id}", "status": "200"}
    assert (metric_sample(text, "kiln_api_requests_total", polled) or 0) >= 2

    worker = httpx.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics", timeout=10).text
    ended = {"kind": "train", "outcome": "succeeded"}
    assert metric_sample(worker, "kiln_worker_jobs_total", ended) == 1
    assert metric_sample(worker, "kiln_worker_jobs_total", ended | {"outcome": "failed"}) == 1
    assert (
        metric_sample(worker, "kiln_worker_job_failures_total", {"reason": "non_finite_loss"}) == 1
    )
    # The failed job stopped in its first fold: only the good job's folds were stored.
    assert metric_sample(worker, "kiln_worker_fold_duration_seconds_count", {"kind": "train"}) == k
    assert metric_sample(worker, "kiln_worker_jobs_running", {}) == 0

    # Two predictor processes share the requests; every scrape, whichever process answers
    # it, reports all of them.
    row = {
        "inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}]
    }
    predictor = httpx.Client(base_url=stack.predict, headers=auth, timeout=30)
    for _ in range(20):
        assert predictor.post("/v2/models/watched/infer", json=row).status_code == 200
    served = {"model": "watched", "version": "1", "route": "/v2/models/{name}/infer"}
    seen = set()
    for _ in range(8):
        scrape = httpx.get(f"{stack.predict}/metrics", timeout=10).text
        seen.add(metric_sample(scrape, "kiln_predict_requests_total", served | {"status": "200"}))
    assert seen == {20}
    loads = metric_sample(scrape, "kiln_predict_cache_loads_total", {})
    hits = metric_sample(scrape, "kiln_predict_cache_hits_total", {})
    assert loads is not None
    assert hits is not None
    assert loads + hits == 20


@pytest.mark.parametrize("stack", ["postgres+redis"], indirect=True)
def test_the_terminal_shows_kiln_lines_with_ids_and_no_tensorflow_internals(stack: Stack) -> None:
    # After the jobs above, on the same stack: what `kiln up` printed.
    log = stack.log.read_text(errors="replace")
    ended = [line for line in log.splitlines() if "registered watched version 1" in line]
    # Kiln's line and Celery's, both with the job's id.
    assert len(ended) == 2, log[-4000:]
    assert " INFO kiln.worker [job=" in ended[0]
    assert " INFO celery.app.trace [job=" in ended[1]
    for internal in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "tf2onnx.tfonnx"):
        assert internal not in log, internal
