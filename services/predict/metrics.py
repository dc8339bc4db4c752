"""The predictor's Prometheus metrics: what the serving path counts, and the cache's
state read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.predict.cache import ModelCache
from services.predict.model import OnnxModel

# Sub-millisecond requests are the normal case; the default buckets start at 5 ms.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class PredictMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = self._counter(
            "kiln_predict_requests",
            "HTTP requests by model, version, route template and status.",
            ["model", "version", "route", "status"],
        )
        self.latency = self._histogram(
            "kiln_predict_request_duration_seconds",
            "Time from the request reaching the app to the end of the response.",
            ["route", "model"],
            _LATENCY_BUCKETS,
        )
        self.model_loads = self._counter(
            "kiln_predict_model_loads",
            "Model versions loaded into ONNX Runtime (cache misses).",
            ["model", "version", "provider"],
        )
        self.model_load_seconds = Histogram(
            "kiln_predict_model_load_seconds",
            "Time to fetch, build and warm a session.",
            registry=registry,
        )
        self.switch_failures = self._counter(
            "kiln_predict_alias_switch_failures",
            "Alias or newest-version moves to a version that could not be served.",
            ["ref", "version"],
        )
        self.batch_requests = self._histogram(
            "kiln_predict_batch_requests", "Requests served by one dynamic batch.", ["model"]
        )
        self.batch_rows = self._histogram(
            "kiln_predict_batch_rows", "Rows in one dynamic batch.", ["model"]
        )

        # labels() takes a lock and builds tuples on every call, a tenth of a tiny request's
        # time; the label sets are few (resolved models x routes x statuses), so keep them.
        self._series: dict[tuple[str, int, str, int], tuple[Counter, Histogram]] = {}

    def _counter(self, name: str, doc: str, labels: list[str]) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, labels: list[str], buckets: tuple[float, ...] = _BATCH_BUCKETS
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    def observe(self, model: str, version: int, route: str, status: int, seconds: float) -> None:
        key = (model, version, route, status)
        series = self._series.get(key)
        if series is None:
            version_label = str(version) if model else ""
            series = (
                self.requests.labels(model, version_label, route, str(status)),
                self.latency.labels(route, model),
            )
            self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def model_loaded(self, model: OnnxModel, seconds: float) -> None:
        self.model_loads.labels(model.name, str(model.version), model.provider).inc()
        self.model_load_seconds.observe(seconds)

    def switch_failed(self, ref: str, version: int, _reason: str) -> None:
        self.switch_failures.labels(ref, str(version)).inc()

    def batch(self, model: OnnxModel, requests: int, rows: int) -> None:
        self.batch_requests.labels(model.name).observe(requests)
        self.batch_rows.labels(model.name).observe(rows)


class CacheCollector(Collector):
    """Cache state read at scrape time, so the serving path only bumps plain ints."""

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("kiln_predict_loaded_models", "Model versions held in memory.")
        loaded.add_metric([], len(self.cache))
        yield loaded
        size = GaugeMetricFamily(
            "kiln_predict_loaded_bytes", "ONNX bytes of the model versions held in memory."
        )
        size.add_metric([], self.cache.loaded_bytes)
        yield size
        info = GaugeMetricFamily(
            "kiln_predict_model_info",
            "1 for each loaded model version, with the execution provider it really got.",
            labels=["model", "version", "provider"],
        )
        for model in self.cache.models():
            info.add_metric([model.name, str(model.version), model.provider], 1)
        yield info
        hits = CounterMetricFamily(
            "kiln_predict_cache_hits", "Requests served by an already loaded model."
        )
        hits.add_metric([], self.cache.hits)
        yield hits
        loads = CounterMetricFamily("kiln_predict_cache_loads", "Model versions loaded.")
        loads.add_metric([], self.cache.loads)
        yield loads
