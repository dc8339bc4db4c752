"""The predictor's metrics with several processes (PREDICT_WORKERS > 1): each process
writes to the PROMETHEUS_MULTIPROC_DIR folder, and a scrape answers their totals: counters
summed, live gauges summed (or maxed) over the processes still alive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from core import metrics as core_metrics
from tests.unit.services.predict.models import metric_sample

# One predictor process: its requests, its cache, its requests in flight; then it exits.
CHILD = """
import os, sys
from types import SimpleNamespace
from prometheus_client import CollectorRegistry
from services.predict.metrics import PredictMetrics

class Cache:
    loads, loaded_bytes = 1, 100
    def __init__(self, hits):
        self.hits = hits
    def __len__(self):
        return 1
    def models(self):
        return [SimpleNamespace(name="iris", version=1, provider="CPUExecutionProvider")]

requests, hits, in_flight = (int(a) for a in sys.argv[1:])
metrics = PredictMetrics(CollectorRegistry())
for _ in range(requests):
    metrics.observe("iris", 1, "/v2/models/{name}/infer", 200, 0.001)
metrics.count_in_flight(lambda: in_flight)
metrics.sync(Cache(hits))
print(os.getpid())
"""


def _process(folder: Path, *args: int) -> int:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[4],
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_a_scrape_answers_every_process_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _process(tmp_path, 3, 2, 1)
    _process(tmp_path, 4, 5, 2)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    def scrape() -> str:
        return generate_latest(core_metrics.scrape_registry(CollectorRegistry())).decode()

    text = scrape()
    served = {"model": "iris", "version": "1", "route": "/v2/models/{name}/infer"}
    assert metric_sample(text, "kiln_predict_requests_total", served | {"status": "200"}) == 7
    assert metric_sample(text, "kiln_predict_cache_hits_total", {}) == 7
    assert metric_sample(text, "kiln_predict_cache_loads_total", {}) == 2
    assert metric_sample(text, "kiln_predict_loaded_models", {}) == 2
    assert metric_sample(text, "kiln_predict_in_flight", {}) == 3
    info = {"model": "iris", "version": "1", "provider": "CPUExecutionProvider"}
    assert metric_sample(text, "kiln_predict_model_info", info) == 1

    # One process gone: its counts stay in the totals, its live gauges leave.
    core_metrics.process_exited(first)
    text = scrape()
    assert metric_sample(text, "kiln_predict_requests_total", served | {"status": "200"}) == 7
    assert metric_sample(text, "kiln_predict_loaded_models", {}) == 1
    assert metric_sample(text, "kiln_predict_in_flight", {}) == 2
    assert metric_sample(text, "kiln_predict_model_info", info) == 1
