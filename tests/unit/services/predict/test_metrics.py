"""services/predict/metrics.py: request counters and latencies, one registry per app, and
the cache's state (providers, hits, loads) read at scrape time."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from services.predict.app import create_app
from tests.unit.services.predict.models import (
    ROWS,
    infer_body,
    make_settings,
    make_source,
    metric_sample,
)


def test_metrics_count_requests_and_loads(client: TestClient) -> None:
    client.post("/v2/models/cancer/infer", json=infer_body(ROWS))
    client.post("/v2/models/cancer/infer", json=infer_body(ROWS))
    client.post("/v2/models/nope/infer", json=infer_body(ROWS))
    text = client.get("/metrics").text
    ok = {"model": "cancer", "version": "2", "route": "/v2/models/{name}/infer", "status": "200"}
    assert metric_sample(text, "kiln_predict_requests_total", ok) == 2
    # An unknown name is not a label value: clients must not be able to grow the series.
    missing = {"model": "", "route": "/v2/models/{name}/infer", "status": "404"}
    assert metric_sample(text, "kiln_predict_requests_total", missing) == 1
    assert metric_sample(text, "kiln_predict_model_loads_total", {"model": "cancer"}) == 1
    assert metric_sample(text, "kiln_predict_loaded_models", {}) == 1
    latency = {"route": "/v2/models/{name}/infer", "model": "cancer"}
    assert metric_sample(text, "kiln_predict_request_duration_seconds_count", latency) == 2


def test_two_apps_have_separate_metrics(tmp_path: Path) -> None:
    with (
        TestClient(create_app(make_settings(tmp_path), source=make_source())) as a,
        TestClient(create_app(make_settings(tmp_path), source=make_source())) as b,
    ):
        a.post("/v2/models/iris/infer", json=infer_body(ROWS))
        labels = {"model": "iris", "status": "200"}
        assert metric_sample(a.get("/metrics").text, "kiln_predict_requests_total", labels) == 1
        assert metric_sample(b.get("/metrics").text, "kiln_predict_requests_total", labels) is None


def test_metrics_report_provider_cache_hits_and_loads(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v2/models/iris/infer", json=infer_body(ROWS))
    text = client.get("/metrics").text
    info = {"model": "iris", "version": "1", "provider": "CPUExecutionProvider"}
    assert metric_sample(text, "kiln_predict_model_info", info) == 1
    assert metric_sample(text, "kiln_predict_cache_loads_total", {}) == 1
    assert metric_sample(text, "kiln_predict_cache_hits_total", {}) == 2
