"""The predictor's Prometheus metrics: what the serving path counts, and the cache's
state and the requests in flight, copied in by `sync` (at each scrape, and twice a second
in every process when several share PROMETHEUS_MULTIPROC_DIR), so that the serving path
only bumps plain ints.

With PREDICT_WORKERS > 1, every process writes its values to the multiprocess folder and
any process's /metrics answers their totals (docs/decisions/0026): counters summed,
loaded models and bytes and requests in flight summed over the live processes, and a
model version's info 1 while any process holds it.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.loaded_models = Gauge(
            "kiln_predict_loaded_models",
            "Model versions held in memory.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.loaded_bytes = Gauge(
            "kiln_predict_loaded_bytes",
            "ONNX bytes of the model versions held in memory.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "kiln_predict_model_info",
            "1 for each loaded model version, with the execution provider it really got.",
            ["model", "version", "provider"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.cache_hits = self._counter(
            "kiln_predict_cache_hits", "Requests served by an already loaded model.", []
        )
        self.cache_loads = self._counter("kiln_predict_cache_loads", "Model versions loaded.", [])
        self.in_flight = Gauge(
            "kiln_predict_in_flight",
            "Requests being served now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._in_flight: Callable[[], int] = lambda: 0
        self._synced_hits = self._synced_loads = 0
        self._info: set[tuple[str, str, str]] = set()

        # labels() takes a lock and builds tuples on every call, a tenth of a tiny request's
        # time; the label sets are few (resolved models x routes x statuses), so keep them.
        self._series: dict[tuple[str, int, str, int], tuple[Counter, Histogram]] = {}

    def count_in_flight(self, read: Callable[[], int]) -> None:
        """Where `sync` reads the requests in flight (the serving middleware's count)."""
        self._in_flight = read

    def sync(self, cache: ModelCache | None, *, scraping: bool = False) -> None:
        """Copy the cache's state and the requests in flight into the metrics; a scrape
        does not count itself as in flight."""
        self.in_flight.set(self._in_flight() - scraping)
        if cache is None:
            return
        self.loaded_models.set(len(cache))
        self.loaded_bytes.set(cache.loaded_bytes)
        info = {(m.name, str(m.version), m.provider) for m in cache.models()}
        for labels in info:
            self.model_info.labels(*labels).set(1)
        # A multiprocess gauge cannot be removed, only zeroed.
        for labels in self._info - info:
            self.model_info.labels(*labels).set(0)
        self._info = info
        hits, loads = cache.hits, cache.loads
        self.cache_hits.inc(hits - self._synced_hits)
        self.cache_loads.inc(loads - self._synced_loads)
        self._synced_hits, self._synced_loads = hits, loads

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
